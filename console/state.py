"""Process-wide console state: the services (built once per process), the first-start demo
index build (one background thread per process, visible to every session), the live index
and cached health checks. Pages get everything they share from here."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Literal

import streamlit as st

from backend.access import SYSTEM, Actor
from backend.access.web import access_store
from backend.errors import RagError
from backend.health import Health, check_all
from backend.ingestion.demo import ensure_demo_index
from backend.ingestion.ingestor import IngestProgress, IngestResult
from backend.ingestion.versions import IndexVersion
from backend.services import Services, close_shared_services, shared_services
from backend.settings import get_settings

log = logging.getLogger(__name__)

HEALTH_TTL_S = 15


def describe(exc: BaseException) -> str:
    """A readable one-line message: 'part: message' for our errors, the type for the rest."""
    return str(exc) if isinstance(exc, RagError) else f"{type(exc).__name__}: {exc}"


def _close(services: Services) -> None:
    try:
        close_shared_services()
    except Exception:  # closing is best effort; a failure here must not hide the next start
        log.exception("closing services failed")


@st.cache_resource(show_spinner=False, on_release=_close)
def get_services() -> Services:
    """Built once per process and shared with the API mounted in the same server: the local
    Qdrant store allows one client per folder. (The frame shows the spinner of the first start,
    in the session's language.)"""
    return shared_services()


# --- first-start demo index ----------------------------------------------------------------
BuildState = Literal["idle", "running", "done", "failed"]


@dataclass(frozen=True)
class BuildStatus:
    state: BuildState
    progress: IngestProgress | None = None
    error: str | None = None
    result: IngestResult | None = None
    seconds: float = 0.0


class DemoBuild:
    """Builds the demo index in a background thread so the first page renders at once and every
    session (and every reload) can watch the same progress."""

    def __init__(self, services: Services):
        self._services = services
        self._lock = threading.Lock()
        self._status = BuildStatus("idle")
        self._t0 = 0.0

    def status(self) -> BuildStatus:
        with self._lock:
            if self._status.state == "running":
                return replace(self._status, seconds=time.monotonic() - self._t0)
            return self._status

    def start(self, actor: Actor = SYSTEM) -> bool:
        """Start unless already running; returns whether a build started."""
        with self._lock:
            if self._status.state == "running":
                return False
            self._status, self._t0 = BuildStatus("running"), time.monotonic()
        threading.Thread(target=self._run, args=(actor,), name="demo-index", daemon=True).start()
        return True

    def _progress(self, p: IngestProgress) -> None:
        with self._lock:
            self._status = replace(self._status, progress=replace(p))  # the ingestor mutates p

    def _run(self, actor: Actor) -> None:
        try:
            result = ensure_demo_index(self._services.ingestor, self._services.settings, actor=actor, progress=self._progress)
        except Exception as exc:  # shown to the user with a retry button
            log.exception("demo index build failed")
            with self._lock:
                self._status = replace(self._status, state="failed", error=describe(exc),
                                       seconds=time.monotonic() - self._t0)
            return
        with self._lock:
            self._status = replace(self._status, state="done", result=result, seconds=time.monotonic() - self._t0)


@st.cache_resource(show_spinner=False)
def demo_build() -> DemoBuild:
    return DemoBuild(get_services())


# --- the live index ------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexInfo:
    alias: str
    collection: str | None = None
    points: int | None = None
    version: IndexVersion | None = None  # the registry row: model, documents, chunks, created
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.collection is not None


def index_info(services: Services) -> IndexInfo:
    alias = services.settings.index_alias
    try:
        collection = services.store.aliases().get(alias)
        if collection is None:
            return IndexInfo(alias)
        points = services.store.count(collection)
        version = services.registry.get(collection)
    except Exception as exc:  # vector store or database down: a status, not a crash
        return IndexInfo(alias, error=describe(exc))
    return IndexInfo(alias, collection, points, version)


def ensure_live_index(services: Services) -> tuple[IndexInfo, BuildStatus]:
    """First start: when the live alias does not exist, start the demo build (once per process)."""
    info, build = index_info(services), demo_build()
    if not info.ready and info.error is None and build.status().state == "idle":
        build.start()
    return info, build.status()


# --- health --------------------------------------------------------------------------------
class HealthMonitor:
    """The latest health snapshot, refreshed in a background thread when older than the TTL,
    so no page ever waits on a slow or hung dependency (each check is bounded anyway)."""

    def __init__(self, services: Services, ttl_s: float = HEALTH_TTL_S):
        self._services, self._ttl = services, ttl_s
        self._lock = threading.Lock()
        self._rows: list[Health] | None = None
        self._at = 0.0
        self._thread: threading.Thread | None = None

    def rows(self, wait_s: float = 0.0, *, fresh: bool = False) -> list[Health] | None:
        """The latest rows (None before the first check ends); starts a refresh when stale. Waits up
        to `wait_s` for a check only while there are no rows yet, or with `fresh`: a stale snapshot
        is shown at once (new sessions waited on every refresh, up to 1 s before the page drew)."""
        with self._lock:
            stale = time.monotonic() - self._at > self._ttl
            if stale and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._run, name="health", daemon=True)
                self._thread.start()
            thread = self._thread if (fresh or self._rows is None) else None
        if wait_s and thread is not None:
            thread.join(wait_s)
        with self._lock:
            return self._rows

    def refresh(self, wait_s: float = 4.0) -> list[Health] | None:
        """Check now (the 'Re-check' button, or after something changed)."""
        with self._lock:
            self._at = 0.0
        return self.rows(wait_s, fresh=True)

    def _run(self) -> None:
        rows = check_all(self._services)
        with self._lock:
            self._rows, self._at = rows, time.monotonic()


@st.cache_resource(show_spinner=False)
def health_monitor() -> HealthMonitor:
    return HealthMonitor(get_services())


def reset() -> None:
    """Forget services, builds, health and settings (tests; a 'reconnect' after fixing the env)."""
    st.cache_resource.clear()
    get_settings.cache_clear()
    access_store.cache_clear()
