"""The page kit every console view uses: namespaced widget keys, ONE action runner with ONE flash,
ONE confirmation dialog for destructive actions, the keyed selectbox that forgets a stale choice,
and the display rules shared by the pages (significance, money, durations, percentages).

UI only: no business logic. The formatters follow the session's language (console.i18n: English
outside a Streamlit run), so builders that use them stay testable without a browser."""
from __future__ import annotations

import contextlib
import logging
import math
from datetime import datetime
from typing import Any, Callable, Iterable, TypeVar

import streamlit as st
from pydantic import ValidationError

from backend.errors import RagError
from console.i18n import language, t
from console.state import describe

log = logging.getLogger(__name__)
T = TypeVar("T")
SS = st.session_state
ICONS = {"success": "✅", "error": "🛑", "warning": "⚠️", "info": "▶️"}
DASH = "—"  # a missing value


class PageKeys:
    """Widget and session keys of one page: `keys = PageKeys("ab")`, `keys("policy_a")` -> "ab.policy_a".
    `icons` overrides the flash icons of the page (by kind: success, error, warning, info)."""

    def __init__(self, ns: str, icons: dict[str, str] | None = None):
        self.ns, self.icons = ns, ICONS | (icons or {})

    def __call__(self, name: str) -> str:
        return f"{self.ns}.{name}"


# --- outcomes: one flash, one runner --------------------------------------------------------------
def note(keys: PageKeys, message: str, kind: str = "success") -> None:
    """Queue a message for the next `flash` (it survives the rerun that follows a callback)."""
    SS.setdefault(keys("flash"), []).append((kind, message))


def flash(keys: PageKeys) -> None:
    """The queued outcomes of the last actions, once. Always a container, even an empty one, so the
    elements below keep their place between reruns."""
    with st.container():
        for kind, message in SS.pop(keys("flash"), []):
            getattr(st, kind)(message, icon=keys.icons.get(kind))


def error_text(exc: BaseException) -> str:
    """The readable one-line reason: the backend's own message (RagError, PermissionDenied…), the
    first problem of a pydantic validation, else the exception's type and text."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        return t("input: {where}{message}", where=where + ": " if where else "", message=first["msg"])
    return describe(exc)


def run(keys: PageKeys, action: Callable[[], T], *, ok: str | Callable[[T], str] | None = None,
        failed: str = "", inline: bool = False, rerun: bool = False, kind: str = "success") -> T | None:
    """Run one backend call and return its result (None when it failed).

    A refusal or failure (RagError, PermissionDenied included, or a validation error) shows its
    readable message, prefixed by `failed` ("Not started — …"): in place with `inline` (code in the
    page body or in a dialog), else as a flash (callbacks: the rerun that follows shows it). Anything
    else is logged with its traceback and shown as an unexpected error. On success `ok` (a text, or
    a function of the result) is flashed as `kind`, and with `rerun` the page reruns so every section
    shows the change."""
    done, result = _attempt(keys, action, failed, inline)
    if done:
        _succeeded(keys, result, ok, kind, rerun)
    return result


def _attempt(keys: PageKeys, action: Callable[[], T], failed: str, inline: bool) -> tuple[bool, T | None]:
    try:
        return True, action()
    except (RagError, ValidationError) as exc:
        text = f"{failed} — {error_text(exc)}" if failed else error_text(exc)
    except Exception as exc:  # a bug: shown briefly, details in the server log
        log.exception("%s action failed", keys.ns)
        text = t("{failed} — unexpected error: {error}", failed=failed, error=describe(exc)) if failed else \
            t("Unexpected error — {error}", error=describe(exc))
    if inline:
        st.error(text, icon=keys.icons["error"])
    else:
        note(keys, text, "error")
    return False, None


def _succeeded(keys: PageKeys, result: Any, ok: str | Callable[[Any], str] | None, kind: str, rerun: bool) -> None:
    if ok is not None:
        note(keys, ok(result) if callable(ok) else ok, kind)
    if rerun:
        st.rerun()


# --- confirmation of destructive actions ---------------------------------------------------------
def ask(keys: PageKeys, kind: str, **facts: Any) -> None:
    """Button callback: open the confirmation `kind`. Its state lives in the session, so the dialog
    survives full reruns (timed fragments, AppTest) until it is confirmed or dismissed."""
    SS[keys("dialog")] = {"kind": kind, **facts}


def asked(keys: PageKeys) -> dict | None:
    """The open confirmation of the page: {"kind": …, **facts}, or None."""
    return SS.get(keys("dialog"))


def close(keys: PageKeys) -> None:
    SS.pop(keys("dialog"), None)


def confirm(keys: PageKeys, title: str, label: str, name: str, action: Callable[[], Any], *,
            ok: str | Callable[[Any], str], body: Callable[[], bool | None] | str = "", failed: str = "",
            spinner: str | None = None) -> None:
    """Draw the open confirmation as a dialog titled `title`: `body` says what will happen (Markdown,
    or a function that draws it with any inputs and returns False to keep the button disabled),
    then the primary button `label` (key `name`_confirm, or `confirm` without a name) runs `action`
    like `run`: on success the dialog closes, `ok` is flashed and the page reruns; a refusal or
    failure shows inside the dialog, which stays open."""
    st.dialog(title, on_dismiss=lambda: close(keys))(_confirm_body)(keys, label, name, action, ok, body, failed,
                                                                    spinner)


def _confirm_body(keys: PageKeys, label: str, name: str, action: Callable[[], Any], ok: Any, body: Any,
                  failed: str, spinner: str | None) -> None:
    enabled = st.markdown(body) if isinstance(body, str) else body()
    if st.button(label, type="primary", key=keys(f"{name}_confirm" if name else "confirm"), disabled=enabled is False):
        with st.spinner(spinner) if spinner else contextlib.nullcontext():
            done, result = _attempt(keys, action, failed, inline=True)
        if done:
            close(keys)
            _succeeded(keys, result, ok, "success", rerun=True)


# --- widgets and the URL --------------------------------------------------------------------------
def from_url(key: str, param: str, options: list, default: Any = None, cast: Callable[[str], Any] = str) -> None:
    """A widget mirrored to ?param= by hand (a short, stable parameter; `bind="query-params"` names it
    after the key and puts the option's label in it): on the first visit, or once its choice is
    no longer an option, it starts at the URL's value when that is an option, else at `default`."""
    if key in SS and (SS[key] in options or (SS[key] is None and default is None)):
        return
    raw = st.query_params.get(param)
    try:
        value = cast(raw) if raw not in (None, "") else default
    except ValueError:
        value = default
    SS[key] = value if value in options else default
    to_url(key, param)


def to_url(key: str, param: str) -> None:
    """Put the widget's value in ?param= (the widget's on_change, or after the code set it)."""
    value = SS.get(key)
    if value is None:
        st.query_params.pop(param, None)
    else:
        st.query_params[param] = str(value)


def shown(messages: Any) -> Callable[[str], str]:
    """format_func for options that are English messages: their text in this session's language,
    looked up from a dict made now (AppTest formats options outside the session's thread)."""
    labels = {m: t(m) for m in messages}
    return lambda m: labels.get(m, m)


def columns(names: Iterable[str], **config: dict) -> dict:
    """A table's column_config that shows each column under its name in the session's language. The
    names stay English in the data (marked with N_ where the table is built: the code, the CSV
    downloads and the tests read them); `config` adds a column's settings (st.column_config.*), whose
    own label wins."""
    out: dict = {c: t(c) for c in names}
    for c, cfg in config.items():
        out[c] = {**cfg, "label": cfg.get("label") or t(c)}
    return out


def select(label: str, options: list, key: str, **kwargs: Any) -> Any:
    """A keyed selectbox whose remembered choice is dropped once it is no longer an option (a version
    promoted or deleted, a set gone since the page first rendered)."""
    if SS.get(key) not in options:
        SS.pop(key, None)
    return st.selectbox(label, options, key=key, **kwargs)


# --- display rules (pure) -------------------------------------------------------------------------
def significant(p_value: float | None, low: float | None, high: float | None) -> bool:
    """A difference the console calls significant: p < 0.05 and the 95% CI excludes 0 (NaN or None
    anywhere: not significant)."""
    if p_value is None or low is None or high is None or any(math.isnan(x) for x in (p_value, low, high)):
        return False
    return p_value < 0.05 and (low > 0 or high < 0)


def missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def money(x: float | None, digits: int | None = None) -> str:
    """USD: '$1,234', '$12.50', '$0.0123', '$0.000123' (precision follows the size), or fixed digits."""
    if missing(x):
        return DASH
    if digits is not None:
        return f"${x:,.{digits}f}"
    a = abs(x)
    if a >= 100:
        return f"${x:,.0f}"
    if a >= 1:
        return f"${x:,.2f}"
    if a == 0:
        return "$0"
    return f"${x:.4f}" if a >= 0.001 else f"${x:.6f}"


def duration(ms: float | None) -> str:
    """A duration given in milliseconds: '0.4 ms', '87 ms', '1.25 s'."""
    if missing(ms):
        return DASH
    sec, milli = ("秒", "毫秒") if language() == "zh" else (" s", " ms")  # Chinese puts no space before a unit
    return f"{ms / 1000:.2f}{sec}" if ms >= 1000 else f"{ms:.0f}{milli}" if ms >= 1 else f"{ms:.1f}{milli}"


def pct(x: float | None, digits: int = 1) -> str:
    """A share as a percentage: 0.1234 -> '12.3%'."""
    return DASH if missing(x) else f"{x:.{digits}%}"


def count(n: int) -> str:
    """A large count, short: '950', '12,345' under 10k, '45k', '1.23M' (Chinese: '4.5万', '1.23亿')."""
    if language() == "zh":
        return f"{n / 1e8:.2f}亿" if n >= 1e8 else (f"{n / 1e4:.1f}万" if n >= 1e4 else f"{n:,}")
    return f"{n / 1e6:.2f}M" if n >= 1e6 else (f"{n / 1e3:.0f}k" if n >= 1e4 else f"{n:,}")


def when(value: datetime | None, seconds: bool = False) -> str:
    """A timestamp to the minute (or second); '' for none. '2026-12-04 14:30' / '2026年12月4日 14:30'."""
    if not value:
        return ""
    clock = f"{value:%H:%M:%S}" if seconds else f"{value:%H:%M}"
    if language() == "zh":
        return f"{value.year}年{value.month}月{value.day}日 {clock}"
    return f"{value:%Y-%m-%d} {clock}"


def code(text: object) -> str:
    """A name shown as inline code: literal, so no Markdown escaping (a backtick becomes ')."""
    return "`" + str(text).replace("`", "'") + "`"
