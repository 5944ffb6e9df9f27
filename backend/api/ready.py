"""The readiness self-test: a real embedding, the vector store through the live alias, and a
1-token generation when an LLM is configured. Each part is bounded; the first failure is named."""
from __future__ import annotations

import time

from backend.services import Services


def self_test(services: Services) -> tuple[dict[str, dict], str | None]:
    checks: dict[str, dict] = {}
    failing: str | None = None

    def run(part: str, fn) -> None:  # noqa: ANN001 - a no-arg callable returning a detail string
        nonlocal failing
        t = time.perf_counter()
        try:
            detail = fn()
            checks[part] = {"ok": True, "ms": round((time.perf_counter() - t) * 1000, 1), "detail": detail}
        except Exception as exc:  # the part is named; internals are not
            checks[part] = {"ok": False, "ms": round((time.perf_counter() - t) * 1000, 1),
                            "detail": f"{type(exc).__name__}"}
            failing = failing or part

    alias = services.settings.index_alias
    run("embedding", lambda: f"dim {len(services.embedder.embed_queries(['ready?'])[0])}")
    run("vector store", lambda: f"{alias} -> {services.store.resolve(alias)} ({services.store.count(alias)} points)")
    if services.settings.openai_base_url:
        def generate() -> str:
            gen = services.engine.generator
            list(gen.stream([{"role": "user", "content": "Say OK."}], [], "ready?", services.settings.llm_model, 0.0, 1))
            return services.settings.llm_model
        run("llm", generate)
    return checks, failing
