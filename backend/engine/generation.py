"""Answer generators: any OpenAI-compatible chat endpoint (streaming, timeout, retries with
backoff on 429/5xx/connection errors), or an extractive answer when no endpoint is set."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterator, Protocol

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from backend.errors import DependencyError
from backend.settings import Settings, _redact
from backend.text import sentences, terms

NOT_ENOUGH = "Not enough context to answer."


@dataclass
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str
    cached_tokens: int | None = None  # the part of prompt_tokens served from the provider's prompt cache


class Generator(Protocol):
    kind: str  # "llm" or "extractive"
    endpoint: str

    def stream(self, messages: list[dict], sources: list[str], question: str, model: str,
               temperature: float, max_tokens: int) -> Iterator[str | Usage]: ...


def _retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)):
        return True  # APITimeoutError is a subclass of APIConnectionError
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def _describe(exc: BaseException, settings: Settings, attempts: int) -> str:
    import openai

    tries = f"{attempts} attempt" + ("s" if attempts != 1 else "")
    if isinstance(exc, openai.APITimeoutError):
        return f"timed out after {settings.llm_timeout_s:g} s ({tries})"
    if isinstance(exc, openai.APIConnectionError):
        return f"unreachable at {_redact(settings.openai_base_url or '')} ({tries})"
    if isinstance(exc, openai.APIStatusError):
        return f"answered HTTP {exc.status_code} ({tries}): {str(exc.message)[:300]}"
    return f"{type(exc).__name__}: {exc}"


class OpenAIGenerator:
    kind = "llm"

    def __init__(self, settings: Settings):
        import httpx
        from openai import OpenAI

        self._settings = settings
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "none"
        timeout = httpx.Timeout(settings.llm_timeout_s, connect=min(5.0, settings.llm_timeout_s))
        self._client = OpenAI(base_url=settings.openai_base_url, api_key=key, timeout=timeout, max_retries=0)
        self.endpoint = settings.openai_base_url or ""

    def _open(self, **kwargs):
        attempts = self._settings.llm_max_retries + 1
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.5, max=8),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        try:
            return retrying(self._client.chat.completions.create, **kwargs)
        except Exception as exc:
            n = retrying.statistics.get("attempt_number", attempts)
            raise DependencyError(_describe(exc, self._settings, n), part="LLM") from exc

    def stream(self, messages, sources, question, model, temperature, max_tokens) -> Iterator[str | Usage]:
        """Yield text deltas, then one Usage. Retries happen only before the first token."""
        stream = self._open(
            model=model, messages=messages, temperature=temperature, max_tokens=max_tokens,
            stream=True, stream_options={"include_usage": True},
        )
        usage = Usage(None, None, model)
        try:
            for chunk in stream:
                if chunk.usage is not None:
                    details = getattr(chunk.usage, "prompt_tokens_details", None)
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens, chunk.model or model,
                                  getattr(details, "cached_tokens", None))
                for choice in chunk.choices or []:
                    if choice.delta and choice.delta.content:
                        yield choice.delta.content
        except Exception as exc:
            raise DependencyError(f"stream broke off: {_describe(exc, self._settings, 1)}", part="LLM") from exc
        yield usage


class ExtractiveGenerator:
    """No LLM configured: quote the source sentences that best match the question, each with its
    source number. A sentence scores by the rarity (IDF over the candidate sentences) of the
    question terms it shares, damped for long sentences and for lower-ranked sources; sentences
    far below the best are left out. Labeled 'extractive' wherever an answer is shown."""

    kind = "extractive"
    endpoint = "none"

    def __init__(self, max_sentences: int = 3, top_sources: int = 5, min_relative: float = 0.5):
        self.max_sentences, self.top_sources, self.min_relative = max_sentences, top_sources, min_relative

    def stream(self, messages, sources, question, model, temperature, max_tokens) -> Iterator[str | Usage]:
        yield self.answer(question, sources)
        yield Usage(None, None, "extractive")

    def answer(self, question: str, sources: list[str]) -> str:
        q_terms = {t for t in terms(question) if len(t) > 1 or not t.isdigit()}  # a lone digit says little
        if not q_terms:
            return NOT_ENOUGH
        cands: list[tuple[int, int, str, Counter]] = []
        for n, text in enumerate(sources[: self.top_sources], 1):
            for pos, (s, e) in enumerate(sentences(text)):
                sent = text[s:e].strip()
                if len(sent) >= 20:
                    cands.append((n, pos, sent, Counter(terms(sent))))
        if not cands:
            return NOT_ENOUGH
        df = Counter(t for *_, c in cands for t in c)

        def score(rank: int, c: Counter) -> float:
            shared = sum(math.log(1 + len(cands) / df[t]) for t in q_terms & c.keys())
            length = sum(c.values())
            return shared / (1 + 0.01 * length) / (1 + 0.15 * (rank - 1))

        scored = sorted(((score(n, c), n, pos, sent) for n, pos, sent, c in cands), key=lambda x: (-x[0], x[1], x[2]))
        best = scored[0][0]
        if best <= 0:
            return NOT_ENOUGH
        chosen = [x for x in scored[: self.max_sentences] if x[0] >= self.min_relative * best]
        chosen.sort(key=lambda x: (x[1], x[2]))
        return " ".join(f"{sent} [{n}]" for _, n, _, sent in chosen)


def make_generator(settings: Settings) -> Generator:
    return OpenAIGenerator(settings) if settings.openai_base_url else ExtractiveGenerator()
