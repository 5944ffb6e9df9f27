"""Split documents into overlapping chunks at sentence and paragraph boundaries.

Chunk ids are derived from the document id and the character span, so re-ingesting an
unchanged corpus yields the same ids (a no-op) and golden sets can point at spans.
"""
from __future__ import annotations

import bisect
import hashlib
import re
import uuid
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from backend.text import sentences

_ID_NAMESPACE = uuid.UUID("6f1c7d1e-0b7a-4a55-9d0e-5b8a2b3c4d10")
_HEADING_RE = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


class ChunkingParams(BaseModel):
    """Chunk size bounds in characters and the overlap carried into the next chunk."""

    target_chars: int = Field(1000, ge=200, le=4000)
    max_chars: int = Field(1500, ge=300, le=6000)
    overlap: float = Field(0.15, ge=0.0, le=0.5)


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str = ""
    source: str = ""
    section: str = ""


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    start: int
    end: int
    text: str
    title: str = ""
    source: str = ""
    section: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def chunk_id(self) -> str:
        return f"{self.doc_id}:{self.start}-{self.end}"

    @property
    def point_id(self) -> str:
        """UUID Qdrant accepts as a point id, stable for the same doc id and span."""
        return str(uuid.uuid5(_ID_NAMESPACE, self.chunk_id))

    @property
    def text_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]

    @property
    def match_text(self) -> str:
        """What is embedded and indexed: title and section heading prefixed for matching, stripped as
        LlamaIndex strips a node's embedding text (backend/ingestion/stages.py), so both agree."""
        head = " / ".join(p for p in (self.title, self.section) if p).strip()
        return f"{head}\n{self.text}".strip() if head else self.text


def _pieces(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Sentence spans, with any sentence longer than max_chars cut into max_chars slices, and a
    blank one (" \n" after a line, a slice of a long run of spaces) joined to the piece before it
    (the first: to the next). A chunk starting on a blank piece stripped to the same start as the
    chunk before it, which it then contained."""
    out: list[tuple[int, int]] = []
    for s, e in sentences(text):
        while e - s > max_chars:
            out.append((s, s + max_chars))
            s += max_chars
        out.append((s, e))
    joined: list[tuple[int, int]] = []
    for s, e in out:
        if joined and (not text[s:e].strip() or not text[joined[-1][0] : joined[-1][1]].strip()):
            joined[-1] = (joined[-1][0], e)  # the non-blank text in a piece stays within max_chars
        else:
            joined.append((s, e))
    return joined


def chunk_document(doc: Document, params: ChunkingParams | None = None) -> list[Chunk]:
    """Greedy packing of whole sentences up to `target_chars` (never over `max_chars`),
    starting each next chunk on a sentence boundary about `overlap` before the previous end."""
    p = params or ChunkingParams()
    # The bounds are checked one by one, so target_chars over max_chars is a valid ChunkingParams (the
    # console passes both as typed); packing to the target then made chunks over max_chars.
    target = min(p.target_chars, p.max_chars)
    text = doc.text
    if not text.strip():
        return []
    pieces = _pieces(text, p.max_chars)
    headings = [(m.start(), m.group(1).strip()) for m in _HEADING_RE.finditer(text)]  # Markdown sections
    starts = [h[0] for h in headings]
    chunks: list[Chunk] = []
    i = 0
    while i < len(pieces):
        start = pieces[i][0]
        j = i
        while j + 1 < len(pieces) and pieces[j + 1][1] - start <= target:
            j += 1
        # A short tail (under half a target) is merged into this chunk when it still fits.
        rest = pieces[-1][1] - pieces[j][1]
        if 0 < rest < target // 2 and pieces[-1][1] - start <= p.max_chars:
            j = len(pieces) - 1
        end = pieces[j][1]
        chunk_text = text[start:end].strip()
        if chunk_text:
            lead = len(text[start:end]) - len(text[start:end].lstrip())
            s, e = start + lead, start + lead + len(chunk_text)
            k = bisect.bisect_right(starts, s) - 1  # the last heading at or before the chunk start
            section = headings[k][1] if k >= 0 and headings[k][1] != doc.title else doc.section
            chunks.append(Chunk(doc.id, s, e, chunk_text, doc.title, doc.source, section))
        if j + 1 >= len(pieces):
            break
        # Step back whole sentences to make the overlap, but always move forward.
        want = int((end - start) * p.overlap)
        k = j + 1
        while k - 1 > i and end - pieces[k - 1][0] <= want:
            k -= 1
        if k == j + 1 and j > i and end - pieces[j][0] <= 2 * want:
            k = j  # one sentence a little over the target still beats no overlap
        # The next chunk must reach past this one's end: an overlap start from which the next sentence
        # no longer fits the target repeated this chunk's span, and with it its id.
        while k <= j and pieces[j + 1][1] - pieces[k][0] > target:
            k += 1
        i = k
    return chunks
