"""Our OpenAI-compatible generator as a LlamaIndex `LLM`: the engine generates its answers through it,
and a team's own pipeline gets the same one (backend/engine/pipelines.py)."""
from __future__ import annotations

from typing import Any, Iterator, Sequence

from llama_index.core.base.llms.types import (ChatMessage, ChatResponse, ChatResponseGen, CompletionResponse,
                                              CompletionResponseGen, LLMMetadata, MessageRole)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import PrivateAttr

from backend.engine.generation import Generator, Usage


class GeneratorLLM(CustomLLM):
    """Our OpenAI-compatible generator as a LlamaIndex LLM, so the engine and a team's pipeline use the
    endpoint, timeouts and retries of OPENAI_BASE_URL without llama-index-llms-openai. The usage the
    endpoint reports (cached prompt tokens included) and the model that answered ride in `raw`, in
    OpenAI's shape, where the instrumentation handler reads them for the ledger."""

    model: str
    temperature: float = 0.1
    max_tokens: int = 512
    _generator: Generator = PrivateAttr()

    def __init__(self, generator: Generator, model: str, temperature: float = 0.1, max_tokens: int = 512) -> None:
        super().__init__(model=model, temperature=temperature, max_tokens=max_tokens)
        self._generator = generator

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model, num_output=self.max_tokens, is_chat_model=True)

    def _stream(self, messages: Sequence[ChatMessage]) -> Iterator[str | Usage]:
        plain = [{"role": m.role.value, "content": m.content or ""} for m in messages]
        return self._generator.stream(plain, [], "", self.model, self.temperature, self.max_tokens)

    def _deltas(self, messages: Sequence[ChatMessage]) -> Iterator[tuple[str, str, dict]]:
        """(delta, text so far, raw) per piece; raw holds the usage once the stream reports it."""
        text, raw = "", {"model": self.model}
        for piece in self._stream(messages):
            if isinstance(piece, Usage):
                raw = {"model": piece.model, "usage": {
                    "prompt_tokens": piece.prompt_tokens, "completion_tokens": piece.completion_tokens,
                    "prompt_tokens_details": {"cached_tokens": piece.cached_tokens}}}
                yield "", text, raw
            else:
                text += piece
                yield piece, text, raw

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text, raw = "", {}
        for _, text, raw in self._deltas(messages):
            pass
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), raw=raw)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            for delta, text, raw in self._deltas(messages):
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta, raw=raw)

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text, raw = "", {}
        for _, text, raw in self._deltas([ChatMessage(role=MessageRole.USER, content=prompt)]):
            pass
        return CompletionResponse(text=text, raw=raw)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            for delta, text, raw in self._deltas([ChatMessage(role=MessageRole.USER, content=prompt)]):
                yield CompletionResponse(text=text, delta=delta, raw=raw)

        return gen()
