"""Price per million tokens by model-name prefix (longest prefix wins); local models cost 0.
The ledger issue turns this into a dated, editable table; the engine only calls `cost_usd`."""
from __future__ import annotations

# (prefix, input USD per 1M tokens, output USD per 1M tokens)
DEFAULT_PRICES: list[tuple[str, float, float]] = [
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1", 2.00, 8.00),
    ("text-embedding-3-small", 0.02, 0.0),
    ("text-embedding-3-large", 0.13, 0.0),
    ("multilingual-e5-small", 0.0, 0.0),
    ("smollm2", 0.0, 0.0),
    ("local", 0.0, 0.0),
    ("extractive", 0.0, 0.0),
]


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> tuple[float, bool]:
    """(cost, price_known)."""
    matches = [p for p in DEFAULT_PRICES if model.startswith(p[0])]
    if not matches:
        return 0.0, False
    _, pin, pout = max(matches, key=lambda p: len(p[0]))
    return (prompt_tokens * pin + completion_tokens * pout) / 1_000_000, True
