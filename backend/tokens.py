"""Token counts for when an API reports no usage (extractive answers, odd servers).

tiktoken needs its BPE files on disk offline: set TIKTOKEN_CACHE_DIR to a folder holding them
(llama-index-core ships cl100k_base and o200k_base). Without one we estimate: ~4 characters a
token for Latin text and one token per CJK character, and say so."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from backend.text import _CJK_RE


def _find_cache_dir() -> str | None:
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return os.environ["TIKTOKEN_CACHE_DIR"]
    try:
        import llama_index.core as lic

        path = Path(lic.__file__).parent / "_static" / "tiktoken_cache"
        return str(path) if path.is_dir() else None
    except ImportError:
        return None


@lru_cache(maxsize=1)
def _encoding():
    cache = _find_cache_dir()
    if not cache:
        return None
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", cache)
    try:
        import tiktoken

        return tiktoken.get_encoding("cl100k_base")
    except Exception:  # missing file or no network: fall back to the estimate
        return None


def count_tokens(text: str) -> tuple[int, str]:
    """(tokens, method) where method is 'tiktoken' or 'estimate'."""
    enc = _encoding()
    if enc is not None:
        return len(enc.encode(text, disallowed_special=())), "tiktoken"
    cjk = len(_CJK_RE.findall(text))
    return cjk + max(0, (len(text) - cjk) // 4), "estimate"
