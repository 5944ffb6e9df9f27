"""The console speaks English and 简体中文: every message of the code has a Chinese translation with the
same placeholders, no translation is left unused, and no visible text is passed to Streamlit without
going through the catalog. Also: the language choice and the saved per-user preference."""
from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest

from backend.access import Role
from backend.access.actor import Actor
from backend.errors import InputError
from console import i18n, kit

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "console").rglob("*.py"), *(ROOT / "pages").glob("*.py")])
# Streamlit calls whose first argument, or these keywords, are shown to the user.
SHOWN = {"title", "header", "subheader", "markdown", "caption", "button", "info", "warning", "error", "success",
         "toggle", "checkbox", "selectbox", "text_input", "number_input", "text_area", "radio", "expander", "metric",
         "form_submit_button", "download_button", "dialog", "spinner", "multiselect", "slider", "date_input",
         "segmented_control", "file_uploader", "popover", "toast", "pills", "select_slider", "time_input",
         "link_button", "write", "exception", "chat_input", "status",
         "tabs", "confirm", "note"}  # console.kit's dialog and flash
SHOWN_KEYWORDS = {"help", "placeholder", "label", "text", "title", "caption", "ok", "failed", "spinner", "body"}
LOGS = {"log", "logger", "logging", "sys.stderr", "sys.stdout"}
POSITIONS = {"note": (1,), "confirm": (1, 2)}  # the shown arguments, where not the first
WORDS = re.compile(r"[A-Za-z]{2,}")


def _calls(tree: ast.AST, names: set[str]) -> list[ast.Call]:
    def name(f: ast.expr) -> str | None:
        return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and name(n.func) in names]


def messages() -> dict[str, str]:
    """Every message of the code (first argument of t() and N_()), with where it is used."""
    found: dict[str, str] = {}
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in _calls(tree, {"t", "N_"}):
            if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
                found.setdefault(call.args[0].value, f"{path.relative_to(ROOT)}:{call.lineno}")
    return found


def fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}


def _literal_text(node: ast.expr) -> str | None:
    """The text a literal argument shows (an f-string's fixed parts), None for anything computed."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant))
    return None


def bypasses(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of each literal with English words handed straight to a Streamlit element or a
    kit message (not through t())."""
    bad = []
    for call in _calls(tree, SHOWN):
        if isinstance(call.func, ast.Attribute) and ast.unparse(call.func.value) in LOGS:
            continue  # log.exception(...), sys.stderr.write(...): for operators, in English
        func = call.func.attr if isinstance(call.func, ast.Attribute) else call.func.id  # type: ignore[attr-defined]
        at = POSITIONS.get(func, (0,))
        shown = [a for i, a in enumerate(call.args) if i in at] + \
            [k.value for k in call.keywords if k.arg in SHOWN_KEYWORDS]
        if func == "tabs" and call.args and isinstance(call.args[0], ast.List):
            shown = list(call.args[0].elts)
        for node in shown:
            text = _literal_text(node)
            if text is not None and WORDS.search(re.sub(r"`[^`]*`|:\w+(/\w+)?:", "", text)):
                bad.append((call.lineno, text))
    return sorted(bad)


def untranslated() -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}" for path in SOURCES if path.name != "i18n.py"
            for line, text in bypasses(ast.parse(path.read_text(encoding="utf-8")))]


def test_every_message_has_a_chinese_translation() -> None:
    zh, used = i18n.catalog("zh"), messages()
    missing = [f"{where}: {m!r}" for m, where in used.items() if m not in zh]
    assert not missing, f"{len(missing)} messages lack a Chinese translation:\n" + "\n".join(missing[:40])


def test_no_unused_translation() -> None:
    unused = sorted(set(i18n.catalog("zh")) - set(messages()))
    assert not unused, f"{len(unused)} translations are no longer used:\n" + "\n".join(map(repr, unused[:40]))


def test_translations_keep_the_placeholders() -> None:
    wrong = [f"{m!r} -> {z!r}" for m, z in i18n.catalog("zh").items() if fields(m) != fields(z) or not z.strip()]
    assert not wrong, "\n".join(wrong[:40])


def test_no_catalog_file_contradicts_another() -> None:
    import json
    seen: dict[str, tuple[str, str]] = {}
    clashes = []
    for path in sorted((i18n.CATALOGS / "zh").glob("*.json")):
        for m, z in json.loads(path.read_text(encoding="utf-8")).items():
            if m in seen and seen[m][0] != z:
                clashes.append(f"{m!r}: {seen[m][1]} and {path.name}")
            seen[m] = (z, path.name)
    assert not clashes, "\n".join(clashes)


def test_no_visible_english_bypasses_the_catalog() -> None:
    bad = untranslated()
    assert not bad, f"{len(bad)} texts go to the page without t():\n" + "\n".join(bad[:60])


def test_the_checks_catch_what_they_should() -> None:
    """The extractor and the bypass check on a small sample (so the tests above cannot pass vacuously)."""
    sample = ast.parse('st.button("Save it")\nst.caption(f"`{x}` · {n}")\nst.info(t("Hello {name}", name=n))\n'
                       'st.tabs(["One", t("Two")])\nLABEL = N_("Three")\nkit.note(keys, "Done", "info")\n'
                       'st.toggle(t("On"), help="Why it matters")\nst.markdown(f"**{a}** · {b:,}")\n'
                       'log.exception("chat failed")\nsys.stderr.write("refusing to start")\n')
    assert bypasses(sample) == [(1, "Save it"), (4, "One"), (6, "Done"), (7, "Why it matters")]
    assert sorted(c.args[0].value for c in _calls(sample, {"t", "N_"})) == ["Hello {name}", "On", "Three", "Two"]
    assert fields("Saved {n} of {total}") == {"n", "total"} and messages()  # the code has messages


def test_language_follows_the_browser_outside_a_choice() -> None:
    assert [i18n.browser_language(x) for x in ("zh-CN", "zh-Hans-SG", "ZH", "en-US", "fr", None, "")] == \
        ["zh", "zh", "zh", "en", "en", "en", "en"]
    assert i18n.language() == "en" and i18n.t("Status") == "Status"  # outside a Streamlit run: English


def test_formatters_follow_the_language(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime
    monkeypatch.setattr(kit, "language", lambda: "zh")
    assert [kit.count(n) for n in (950, 12_345, 4_500_000, 123_000_000)] == ["950", "1.2万", "450.0万", "1.23亿"]
    assert kit.when(datetime(2026, 12, 4, 14, 30)) == "2026年12月4日 14:30"
    assert kit.duration(1250) == "1.25秒" and kit.duration(87.4) == "87毫秒"
    monkeypatch.setattr(kit, "language", lambda: "en")
    assert kit.when(datetime(2026, 12, 4, 14, 30)) == "2026-12-04 14:30" and kit.count(45_000) == "45k"


def test_the_language_choice_is_kept_per_user(services) -> None:  # noqa: ANN001 - fixture
    ana = Actor(id="ana", name="ana", role=Role.viewer)
    bo = Actor(id="bo@example.com", name="Bo", role=Role.viewer)
    access = services.access
    assert access.language(ana) is None
    access.set_language(ana, "zh")
    access.set_language(bo, "en")
    access.set_language(ana, "en")
    access.set_language(ana, "zh")  # changed twice: one row, the last choice
    assert (access.language(ana), access.language(bo)) == ("zh", "en")
    with pytest.raises(InputError, match="language must be one of en, zh"):
        access.set_language(ana, "fr")
    assert access.language(ana) == "zh"
    audited = services.audit.recent(action="preference.language")
    assert [(r.actor, r.result) for r in audited[:2]] == [("ana", "error"), ("ana", "ok")]
