"""Property tests (hypothesis): whatever bytes or values arrive, the golden-set parsers, the policy
JSON parser and the question validator give a valid result or the project's InputError, never
another exception. Each test counts the inputs it tried and prints the figure (pytest -s)."""
from __future__ import annotations

import json
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.engine.policy import Policy, parse_policy
from backend.engine.query_engine import QueryEngine
from backend.errors import InputError
from backend.evaluation.golden import GoldItem, export_csv, export_jsonl, parse_items
from backend.settings import Settings

TRIED: Counter[str] = Counter()
RUN = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values a file's author might write, chosen to hit the edges: control characters, surrogates,
# spans, nulls, numbers and lists where text belongs, long and nested values.
edge_text = st.one_of(st.text(), st.text(alphabet=st.characters(codec=None), max_size=30),
                      st.sampled_from(["", " ", "doc12", "d:10-20", "d:20-10", "d:5-5", "\x00", "\ud800", "a\u2028b",
                                       "x" * 4001, "d:" + "9" * 40 + "-1"]))
json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | edge_text,
                          lambda kids: st.lists(kids, max_size=4) | st.dictionaries(edge_text, kids, max_size=4),
                          max_leaves=12)
ref = st.fixed_dictionaries({"doc_id": json_value}, optional={"start": json_value, "end": json_value, "quote": json_value})
row = st.fixed_dictionaries({}, optional={
    "question": json_value | edge_text, "gold_ids": json_value | st.lists(edge_text | st.integers(), max_size=4),
    "references": json_value | st.lists(ref, max_size=3), "reference_answer": json_value, "tags": json_value,
    "external_id": json_value, "id": json_value, "answer": json_value})


def _parse(data: bytes, name: str, kind: str) -> None:
    TRIED[kind] += 1
    try:
        items = parse_items(data, name)
    except InputError:
        return
    assert items and all(isinstance(i, GoldItem) for i in items)
    assert all(0 < len(i.question) <= 4000 for i in items)
    assert all(r.end is None or r.end > r.start for i in items for r in i.references)


@RUN
@given(st.lists(row, min_size=1, max_size=4))
def test_jsonl_rows_parse_or_raise_input_error(rows: list[dict]) -> None:
    _parse("\n".join(json.dumps(r) for r in rows).encode("utf-8", "surrogatepass"), "set.jsonl", "jsonl (rows)")


@RUN
@given(st.binary(max_size=300) | st.text().map(lambda t: t.encode("utf-8")))
def test_any_bytes_as_jsonl_or_csv(data: bytes) -> None:
    _parse(data, "set.jsonl", "jsonl (bytes)")
    _parse(data, "set.csv", "csv (bytes)")


csv_cell = edge_text | st.sampled_from(['"', '"a"b', "a,b", "a\nb", "d1|d2:3-4;d5", "x" * 140_000])


@RUN
@given(st.lists(st.lists(csv_cell, min_size=0, max_size=5), min_size=1, max_size=4),
       st.sampled_from(["question,gold_context_ids", "question,gold_context_ids,reference_answer,tags", "q,ids"]))
def test_csv_rows_parse_or_raise_input_error(cells: list[list[str]], header: str) -> None:
    body = "\n".join(",".join(c) for c in cells)
    _parse(f"{header}\n{body}".encode("utf-8", "surrogatepass"), "set.csv", "csv (rows)")


@RUN
@given(st.lists(row, min_size=1, max_size=3))
def test_a_parsed_file_round_trips_through_both_exports(rows: list[dict]) -> None:
    TRIED["round trip"] += 1
    try:
        items = parse_items("\n".join(json.dumps(r) for r in rows).encode("utf-8", "surrogatepass"), "set.jsonl")
    except InputError:
        return
    assert parse_items(export_jsonl(items).encode(), "again.jsonl") == items
    assert [i.question for i in parse_items(export_csv(items).encode(), "again.csv")] == [i.question for i in items]


policy_field = st.sampled_from(["name", "version", "top_k", "retrieval_mode", "fusion", "candidates", "rerank",
                                "rerank_candidates", "prompt_template", "model", "temperature", "max_tokens", "index",
                                "unknown"])


@RUN
@given(st.dictionaries(policy_field, json_value, max_size=6) | json_value)
def test_policy_json_parses_or_raises_input_error(spec: object) -> None:
    TRIED["policy json"] += 1
    try:
        policy = parse_policy(json.dumps(spec).encode("utf-8", "surrogatepass"))
    except InputError:
        return
    assert isinstance(policy, Policy) and Policy.model_validate(policy.model_dump()) == policy


@RUN
@given(st.binary(max_size=200))
def test_policy_bytes_parse_or_raise_input_error(data: bytes) -> None:
    TRIED["policy bytes"] += 1
    try:
        parse_policy(data)
    except InputError:
        pass


@RUN
@given(json_value | edge_text)
def test_question_validator_gives_a_question_or_input_error(question: object) -> None:
    TRIED["question validator"] += 1
    engine = QueryEngine.__new__(QueryEngine)  # validate() reads only the settings: no index needed
    engine.settings = Settings(_env_file=None)
    try:
        q = engine.validate(question, Policy())  # type: ignore[arg-type]
    except InputError:
        return
    assert q and q == q.strip() and len(q) <= engine.settings.max_question_chars
    q.encode("utf-8")  # what PostgreSQL stores in the trace and the ledger after the paid call


def test_report_inputs_tried() -> None:
    """Runs last in this file: the number of inputs each parser was given."""
    print("\ninputs tried per parser:", dict(TRIED))
