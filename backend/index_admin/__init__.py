"""Index versions and what is done to them: the version registry (versions), shadow rebuilds,
the evaluation gate, atomic alias promote and rollback, deletion (service, gate, tables),
uploads to index (uploads) and snapshots (snapshots).

May import: the engine (vector store, policies, QueryEngine for the gate), ingestion, evaluation
metrics, releases, background jobs, settings, errors, text, db, audit, access."""
