"""Language-aware text helpers shared by chunking, sparse vectors and extractive answers, and the
checks every service applies to text and numbers it is given (`check_text`, `finite_number`).

English is split into words, stop words dropped and Porter-stemmed; Chinese (and other CJK)
becomes character unigrams plus bigrams, which needs no segmenter and scores well on CMRC.
"""
from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from functools import lru_cache
from typing import Any

import snowballstemmer

from backend.errors import InputError

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# CJK runs, or word runs of anything else (so "11.42亿元" gives "42" and "亿元", not "42亿元").
TOKEN_RE = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+", re.UNICODE)
CJK_RE = re.compile(rf"[{_CJK}]")
TOKENIZER_VERSION = 2  # part of every index fingerprint: a change means a rebuild
# Sentence ends: Latin punctuation followed by space (or glued to a capital, as in "half.How"),
# CJK full stops (no space needed), or line breaks.
SENTENCE_END_RE = re.compile(r"(?<=[.!?;])\s+|(?<=[a-z0-9)\]%][.!?])(?=[A-Z])|(?<=[。！？；])|\n+")

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just me more most my myself no
    nor not now of off on once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours yourself yourselves
    also may might must shall via vs et al""".split()
)

_stemmer = snowballstemmer.stemmer("porter")


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return _stemmer.stemWord(word)


def terms(text: str) -> list[str]:
    """Index terms of a text: stemmed English words and CJK character uni+bigrams."""
    out: list[str] = []
    for match in TOKEN_RE.finditer(text.lower()):
        tok = match.group()
        if CJK_RE.match(tok):
            out.extend(tok)
            out.extend(tok[i : i + 2] for i in range(len(tok) - 1))
        elif (tok not in STOPWORDS and len(tok) > 1) or tok.isdigit():
            out.append(_stem(tok))
    return out


def term_id(term: str) -> int:
    """Stable 32-bit id of a term: a sparse-vector index that is the same in every process."""
    return zlib.crc32(term.encode("utf-8"))


def term_counts(text: str) -> Counter[str]:
    return Counter(terms(text))


def has_cjk(text: str) -> bool:
    return bool(CJK_RE.search(text))


def sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences (or lines) of a text, covering it end to end."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in SENTENCE_END_RE.finditer(text):
        end = m.end()
        if end > start:
            spans.append((start, end))
            start = end
    if start < len(text):
        spans.append((start, len(text)))
    return spans


# Lone surrogates too: no UTF-8 encoding exists, so PostgreSQL (and SQLite) cannot store them.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def control_chars(text: str) -> str:
    """The first control character (or lone surrogate) in `text` as 'U+0000', or '' when there is
    none. Newlines and tabs are text; the rest is refused at the boundary (never stripped)."""
    m = _CONTROL_RE.search(text)
    return f"U+{ord(m.group()):04X}" if m else ""


_LINE_BREAK_RE = re.compile(r"[\t\n\r]")


def column_length(column: Any) -> int | None:
    """The VARCHAR(n) limit of a SQLAlchemy column, or None for unbounded text: the one source of
    the limits below, so the rule is the schema's and the same on SQLite and PostgreSQL."""
    return getattr(column.type, "length", None)


def text_problem(value: object, *, max_chars: int | None = None, multiline: bool = False) -> str:
    """Why `value` cannot be stored as text, or '' when it can. One rule for SQLite and PostgreSQL:
    PostgreSQL refuses NUL and lone surrogates and enforces VARCHAR(n) where SQLite accepts all three,
    so a value that passed on SQLite failed on PostgreSQL, after the work (or the paid call) was done.
    Newlines and tabs only where the field is multi-line."""
    if not isinstance(value, str):
        return f"must be text, not {type(value).__name__}"
    m = None if multiline else _LINE_BREAK_RE.search(value)
    bad = f"U+{ord(m.group()):04X}" if m else control_chars(value)
    if bad:
        return f"holds a control character ({bad}); remove it"
    if max_chars is not None and len(value) > max_chars:
        return f"has {len(value):,} characters; the limit is {max_chars:,}"
    return ""


def check_text(value: object, field: str, *, max_chars: int | None = None, multiline: bool = False) -> str:
    """`value` unchanged when a text column can hold it, else InputError naming the field (never stripped)."""
    problem = text_problem(value, max_chars=max_chars, multiline=multiline)
    if problem:
        raise InputError(f"{field} {problem}")
    return value  # type: ignore[return-value]  (text_problem checked it is a str)


def finite_number(value, field: str, ceiling: float, unit: str = "") -> float:
    """`value` as a float from 0 to `ceiling`. Refuses inf, NaN ('1e999' parses as inf), negatives
    and absurd sizes: one infinite price turned its model's costs into NaN and disabled budgets."""
    if isinstance(value, bool):
        raise InputError(f"{field} '{value}' is not a number")
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{field} '{str(value)[:40]}' is not a number") from None
    if not math.isfinite(x):
        raise InputError(f"{field} must be a finite number, not '{str(value)[:40]}'")
    if x < 0:
        raise InputError(f"{field} must be zero or more, not {x:g}")
    if x > ceiling:
        raise InputError(f"{field} {x:g} is above the ceiling of {ceiling:,.0f}{unit}; is it a typo?")
    return x
