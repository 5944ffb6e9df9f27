"""English and 简体中文 for the console.

English is the source language: the English text of a message is its id, so code reads as it
shows (`t("Save draft")`, `t("Saved item #{n}", n=3)`). The Chinese catalog is the JSON files of
`console/locales/zh/` (one per area, merged), each mapping an English message to its translation
with the same `{placeholders}`. tests/test_i18n.py extracts every message from the code and fails
when one has no translation, a translation is no longer used, or placeholders differ.

Messages kept in module constants are marked with `N_` (extracted, not translated) and translated
where they are drawn with `t(constant)`.

The language of a session: the user's saved choice (the sidebar switch, kept per user in the
database), else the browser's language (`st.context.locale`: zh-* is Chinese), else English."""
from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from backend.access import Actor
from backend.access.service import LANGUAGES, AccessStore

log = logging.getLogger(__name__)

LANGUAGE_NAMES = {"en": "English", "zh": "简体中文"}
assert set(LANGUAGE_NAMES) == set(LANGUAGES)
CATALOGS = Path(__file__).with_name("locales")
KEY = "i18n.language"
SAVED_KEY = "i18n.saved_loaded"  # the saved choice was read once in this session


@cache
def catalog(language: str) -> dict[str, str]:
    """The merged catalog of one language (empty for English, the source language)."""
    merged: dict[str, str] = {}
    for path in sorted((CATALOGS / language).glob("*.json")):
        merged |= json.loads(path.read_text(encoding="utf-8"))
    return merged


def N_(message: str) -> str:  # noqa: N802 - the gettext convention
    """Mark a message for the catalog where it is defined; `t()` translates it where it is drawn."""
    return message


def browser_language(locale: str | None) -> str:
    """'zh-CN', 'zh-Hans-SG', 'zh' -> 'zh'; anything else (or nothing) -> 'en'."""
    return "zh" if (locale or "").lower().startswith("zh") else "en"


def language() -> str:
    """This session's language ('en' outside a Streamlit run: tests, the backend's own scripts)."""
    if get_script_run_ctx() is None:
        return "en"
    chosen = st.session_state.get(KEY)
    return chosen if chosen in LANGUAGE_NAMES else browser_language(st.context.locale)


def t(message: str, /, **values: object) -> str:
    """`message` in this session's language, with `values` put into its {placeholders}."""
    lang = language()
    text = message if lang == "en" else catalog(lang).get(message, message)
    return text.format(**values) if values else text


def restore_saved(access: AccessStore, actor: Actor) -> None:
    """Once per session: the language this user chose last time, wherever they chose it. A database
    that does not answer leaves the browser's language for this session (not retried per rerun)."""
    if st.session_state.get(SAVED_KEY):
        return
    st.session_state[SAVED_KEY] = True
    try:
        saved = access.language(actor)
    except Exception:
        log.warning("reading the saved language failed", exc_info=True)
        return
    if saved in LANGUAGE_NAMES and KEY not in st.session_state:
        st.session_state[KEY] = saved


def switch(access: AccessStore, actor: Actor) -> None:
    """The sidebar's language switch; the choice sticks for this user (saved per user)."""
    st.session_state.setdefault(KEY, language())
    st.selectbox("🌐 Language · 语言", list(LANGUAGE_NAMES), format_func=LANGUAGE_NAMES.get, key=KEY,
                 on_change=_save, args=(access, actor))


def _save(access: AccessStore, actor: Actor) -> None:
    try:
        access.set_language(actor, st.session_state[KEY])
    except Exception:  # the switch works for this session even when it cannot be kept
        log.warning("saving the language failed", exc_info=True)
