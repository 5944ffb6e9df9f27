"""A real Prometheus (the Debian package, `prometheus` on PATH) started on a free loopback port,
scraping the targets a test names every second and loading the shipped alert rules. Like the
services in tests/services.py: it must start, or the test fails naming it."""
from __future__ import annotations

import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from services import HOST, _Proc, _wait_ready, free_port

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "alert_rules.yml"


@dataclass
class PrometheusServer:
    url: str
    workdir: Path
    proc: _Proc

    def stop(self) -> None:
        self.proc.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_prometheus(targets: list[str], job: str = "rag-console", scrape_interval: str = "1s") -> PrometheusServer:
    workdir = Path(tempfile.mkdtemp(prefix="test-prometheus-"))
    shutil.copy(RULES, workdir / "alert_rules.yml")
    quoted = ", ".join(f'"{t}"' for t in targets)
    (workdir / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: {scrape_interval}\n"
        f"rule_files:\n  - {workdir / 'alert_rules.yml'}\n"
        f"scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{quoted}]\n")
    port = free_port()
    proc = _Proc("prometheus", [
        "prometheus", f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={HOST}:{port}", "--log.level=warn",
    ], workdir / "prometheus.log")
    url = f"http://{HOST}:{port}"
    proc.start()

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
            return r.status == 200

    _wait_ready("prometheus", ready, 30, proc)
    return PrometheusServer(url, workdir, proc)


@pytest.fixture
def prometheus() -> Iterator[Callable[..., PrometheusServer]]:
    """A starter: `prometheus(["127.0.0.1:PORT"])`; every server it started is stopped after the test."""
    started: list[PrometheusServer] = []

    def start(targets: list[str], **kw) -> PrometheusServer:
        srv = start_prometheus(targets, **kw)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
