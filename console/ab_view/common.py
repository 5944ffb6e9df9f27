"""What the modules of the A/B page share: its widget keys (`ab.*`, console.kit.PageKeys: one
instance for the page, so the flash and the confirmation dialog are the page's own), the policy
versions one can compare or release ("name:version" options, or the built-in default), and the
column headers of its tables in the session's language."""
from __future__ import annotations

import streamlit as st

from backend.engine.policy import Policy, policy_label
from backend.services import Services
from console import kit
from console.i18n import t

keys = kit.PageKeys("ab")
SS = st.session_state
BUILTIN = "default:"  # option value of the built-in default policy


def option_label(option: str) -> str:
    name, _, version = option.rpartition(":")
    return t("{name} (built-in)", name=name) if option == BUILTIN else policy_label(name, int(version))


def parse_option(option: str) -> tuple[str, int | None]:
    name, _, version = option.rpartition(":")
    return name, int(version) if version else None


def policy_options(services: Services) -> list[str]:
    options = [BUILTIN]
    for p in services.policies.list():
        options += [f"{v.name}:{v.version}" for v in reversed(services.policies.versions(p.name))]
    return options


def load_policy(services: Services, option: str) -> Policy:
    name, version = parse_option(option)
    return services.policies.get(name, version)


def headers(rows: list[dict], **config: dict) -> dict:
    """kit.columns for a table given as row dicts."""
    return kit.columns(rows[0] if rows else (), **config)