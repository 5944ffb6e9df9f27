"""Factories as a team writes them, for PIPELINE_FACTORIES in the tests (no tests here): a pipeline that
counts its builds, and two of LlamaIndex's own node postprocessors in place of our rerank stage."""
from __future__ import annotations

from llama_index.core.postprocessor import LLMRerank, SimilarityPostprocessor

from bench.retrieval import plain_pipeline

BUILDS: list[str] = []


def counting_pipeline(ctx):  # noqa: ANN001, ANN201 - a factory as a team writes one
    """The plain pipeline, counting its builds (the engine must not build per question)."""
    BUILDS.append(ctx.alias)
    return plain_pipeline(ctx)


def llm_rerank(ctx):  # noqa: ANN001, ANN201 - a postprocessor factory as a team writes one
    """LlamaIndex's own LLM reranker on the policy's LLM: it sends no rerank events, only LLM calls."""
    return LLMRerank(llm=ctx.llm, top_n=ctx.policy.top_k)


def fused_score_cutoff(ctx):  # noqa: ANN001, ANN201
    """LlamaIndex's similarity filter: a postprocessor that calls no model at all."""
    return SimilarityPostprocessor(similarity_cutoff=0.025)
