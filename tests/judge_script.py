"""What a good ragas judge answers, scripted for the fault-injection LLM (no tests here): the prompt
fragments that pick each of ragas' judge calls and the verdicts for one question, answer and contexts."""
from __future__ import annotations

import json

QUESTION = "What is the capital of France?"
ANSWER = "Paris is the capital of France. Paris has ten million people."
CONTEXTS = ["KIWI-CONTEXT Berlin is the capital of Germany.", "MANGO-CONTEXT Paris is the capital and largest city of France."]

FAITHFULNESS_STATEMENTS = "Break down each sentence"
FAITHFULNESS_NLI = "judge the faithfulness of a series of statements"
RELEVANCY = "Generate a question for the given answer"
PRECISION = "verify if the context was useful"


def scripted(question: str = QUESTION) -> list[tuple[tuple[str, ...], str]]:
    """Verdicts a good judge would give: 1 of 2 statements supported, the useful context second."""
    statements = ["Paris is the capital of France.", "Paris has ten million people."]
    return [
        ((FAITHFULNESS_STATEMENTS,), json.dumps({"statements": statements})),
        ((FAITHFULNESS_NLI,), json.dumps({"statements": [
            {"statement": statements[0], "reason": "stated in the context", "verdict": 1},
            {"statement": statements[1], "reason": "not in the context", "verdict": 0}]})),
        ((RELEVANCY,), json.dumps({"question": question, "noncommittal": 0})),
        ((PRECISION, "KIWI-CONTEXT"), json.dumps({"reason": "about Germany", "verdict": 0})),
        ((PRECISION,), json.dumps({"reason": "names the capital", "verdict": 1})),
    ]
