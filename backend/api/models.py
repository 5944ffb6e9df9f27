"""Request and response bodies of the API (pydantic): the OpenAPI schema is generated from these."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from backend.engine.query_engine import Answer, SourceChunk
from backend.text import control_chars

MAX_TOP_K = 100
# A payload key the vector store can match: dotted names of letters, digits, '_' and '-'.
FilterKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", max_length=200)]


def _clean(text: str, what: str) -> str:
    bad = control_chars(text)
    if bad:
        raise ValueError(f"{what} holds a control character ({bad}); remove it")
    return text


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(..., min_length=1, description="The question; control characters are refused.")
    policy: str | None = Field(None, description="A saved policy as `name` or `name@version`; unset = the live release.")
    filters: dict[FilterKey, str | int | bool] | None = Field(None, description="Payload equality filters, e.g. {\"doc_id\": \"12\"}.")
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K, description="Sources to return (overrides the policy).")
    retrieval_only: bool = Field(False, description="Retrieve and build the prompt; call no model.")
    stream: bool = Field(False, description="Server-sent events: sources, then text deltas, then the final answer.")

    @field_validator("question")
    @classmethod
    def _question(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the question is empty")
        return _clean(v, "the question")


class QueryResponse(Answer):
    """The answer object `python -m backend query --json` prints, plus where it was served from."""

    release: str | None = Field(None, description="The release that answered (live traffic), else null.")
    variant: str | None = Field(None, description="current or candidate (live traffic), else null.")


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """OpenAI's chat completions body; `model` names a policy (`rag` = the live release). Sampling
    fields are accepted and ignored: the policy decides."""

    model_config = ConfigDict(extra="allow")

    model: str = Field("rag", max_length=200)
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False

    def question(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                if isinstance(m.content, str):
                    text = m.content
                else:
                    text = "\n".join(str(p.get("text", "")) for p in (m.content or []) if p.get("type") == "text")
                if text.strip():
                    return _clean(text, "the last user message")
        raise ValueError("no user message with text")


class CompletionMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class CompletionChoice(BaseModel):
    index: int
    message: CompletionMessage
    finish_reason: Literal["stop"]


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RagInfo(BaseModel):
    """Where a chat completion came from: what `/query` returns beside the answer text."""

    request_id: str
    answer_kind: Literal["llm", "extractive", "retrieval_only"]
    policy: str
    collection: str
    cost_usd: float
    cache_hit: bool
    latency_ms: dict[str, float]
    release: str | None
    variant: str | None
    citations: list[int]


class ChatCompletion(BaseModel):
    """OpenAI's chat completion object; the answer keeps its `[n]` citations, and `sources` holds
    the chunks they point at (n = a source's rank)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage
    sources: list[SourceChunk]
    rag: RagInfo


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(..., min_length=1, max_length=64)
    score: Literal["up", "down", 1, -1] = Field(..., description="Thumbs up (`up` or 1) or down (`down` or -1).")
    comment: str = Field("", max_length=4000)

    @field_validator("comment", "request_id")
    @classmethod
    def _text(cls, v: str) -> str:
        return _clean(v, "the text")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rag-ops-console"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    type: str
    message: str
    part: str
    request_id: str


class ErrorResponse(BaseModel):
    error: ErrorBody
