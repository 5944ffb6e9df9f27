"""Language-aware text helpers shared by chunking, sparse vectors and extractive answers.

English is split into words, stop words dropped and Porter-stemmed; Chinese (and other CJK)
becomes character unigrams plus bigrams, which needs no segmenter and scores well on CMRC.
"""
from __future__ import annotations

import re
import zlib
from collections import Counter
from functools import lru_cache

import snowballstemmer

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


_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def control_chars(text: str) -> str:
    """The first control character in `text` as 'U+0000', or '' when there is none. Newlines and
    tabs are text; NUL and the other control characters are refused at the boundary (never stripped)."""
    m = _CONTROL_RE.search(text)
    return f"U+{ord(m.group()):04X}" if m else ""
