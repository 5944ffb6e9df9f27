"""Evaluation: golden sets (questions, gold chunks, reference answers), evaluation runs and their
diffs, the retrieval metrics every run and the gate share (metrics), answer-quality metrics
(quality), the LLM judge, the statistics behind confidence intervals (stats), chat traces with their
feedback (traces), and a data set evaluated end to end (dataset).

May import: the engine, ingestion (dataset), background jobs, the ledger's call types (judge),
settings, errors, text, db, access, exports."""
