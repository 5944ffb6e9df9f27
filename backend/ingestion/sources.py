"""Readers: a folder of .txt/.md/.html/.pdf files, or a corpus.jsonl of {"id","title","text"}."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from backend.errors import InputError
from backend.ingestion.chunking import Document

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf"}


@dataclass
class LoadResult:
    documents: list[Document]
    source: str
    skipped: list[str] = field(default_factory=list)  # "path: reason" for files that could not be read


class _HTMLText(HTMLParser):
    """Visible text and <title> of an HTML page (script and style dropped)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs) -> None:  # noqa: ANN001
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in ("p", "br", "div", "li", "h1", "h2", "h3", "h4", "tr", "section", "article"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)


def _read_file(path: Path, root: Path) -> Document:
    rel = str(path.relative_to(root))
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        from pypdf import PdfReader

        reader = PdfReader(str(path))
        text = "\n\n".join(page.extract_text() or "" for page in reader.pages)
        title = (reader.metadata.title if reader.metadata and reader.metadata.title else "") or path.stem
        return Document(rel, text, title, rel)
    raw = path.read_text(encoding="utf-8")
    if suffix in (".html", ".htm"):
        parser = _HTMLText()
        parser.feed(raw)
        text = "".join(parser.parts)
        lines = [ln.strip() for ln in text.splitlines()]
        return Document(rel, "\n".join(ln for ln in lines if ln), parser.title.strip() or path.stem, rel)
    title = path.stem
    if suffix in (".md", ".markdown"):
        for line in raw.splitlines():
            if line.startswith("# "):
                title = line[2:].strip()
                break
    return Document(rel, raw, title, rel)


def load_corpus_jsonl(path: Path) -> LoadResult:
    docs: list[Document] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row["text"], str):
                    raise TypeError("'text' must be a string")
                docs.append(Document(str(row["id"]), row["text"], str(row.get("title") or ""), path.parent.name))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputError(f"{path} line {n}: not a corpus row with 'id' and 'text' ({exc})") from exc
    return LoadResult(docs, str(path))


def load_source(path: str | Path, limit: int | None = None) -> LoadResult:
    """Documents from a corpus.jsonl, a folder holding one, or a folder of text files."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"source not found: {p}")
    if p.is_file() and p.suffix == ".jsonl":
        result = load_corpus_jsonl(p)
    elif p.is_dir() and (p / "corpus.jsonl").is_file():
        result = load_corpus_jsonl(p / "corpus.jsonl")
    elif p.is_dir():
        docs, skipped = [], []
        for f in sorted(x for x in p.rglob("*") if x.is_file() and x.suffix.lower() in TEXT_SUFFIXES):
            try:
                doc = _read_file(f, p)
            except Exception as exc:  # unreadable or malformed file: report it, keep the rest
                skipped.append(f"{f.relative_to(p)}: {type(exc).__name__}: {exc}")
                continue
            if doc.text.strip():
                docs.append(doc)
            else:
                skipped.append(f"{f.relative_to(p)}: no text")
        result = LoadResult(docs, str(p), skipped)
    else:
        raise InputError(f"unsupported source {p}: give a folder of .txt/.md/.html/.pdf files or a corpus.jsonl")
    if limit is not None:
        result.documents = result.documents[:limit]
    if not result.documents:
        why = f" ({len(result.skipped)} files skipped: {'; '.join(result.skipped[:3])})" if result.skipped else ""
        raise InputError(f"no documents with text found in {p}{why}")
    return result
