"""The README, compose file and CI entry point stay true to the code."""
from __future__ import annotations

import re

from backend.settings import PROJECT_ROOT, Settings

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def test_settings_table_lists_exactly_the_settings() -> None:
    table = set(re.findall(r"^\| `([A-Z_]+)` \|", README, flags=re.M))
    assert table == {name.upper() for name in Settings.model_fields}


def test_compose_only_uses_real_settings() -> None:
    compose = (PROJECT_ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    console = compose.split("\n  qdrant:")[0]
    used = set(re.findall(r"^      ([A-Z_]+):", console, flags=re.M))
    assert used and used <= {name.upper() for name in Settings.model_fields}


def test_quick_start_commands_exist_and_ci_runs_the_test_command() -> None:
    quick = README.split("## Quick start")[1].split("```")[1]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()[1:]]
    assert commands == ["bash scripts/console.sh", "bash scripts/test.sh"]
    for cmd in commands:
        assert (PROJECT_ROOT / cmd.split()[1]).is_file()
    assert "bash scripts/test.sh" in (PROJECT_ROOT / ".ci" / "run").read_text()


def test_stack_never_shows_credentials() -> None:
    s = Settings(_env_file=None, qdrant_url="https://admin:s3cret@qdrant.example:6333", redis_url="redis://:pw@cache:6379/0",
                 openai_base_url="https://user:key@llm.example/v1", database_url="postgresql+psycopg://rag:pw@db/rag")
    shown = " ".join(s.stack.values())
    assert "s3cret" not in shown and ":pw@" not in shown and "key@" not in shown
    assert "qdrant.example:6333" in shown and "llm.example" in shown
