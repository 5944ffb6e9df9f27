"""The page kit (console/kit.py) on a tiny AppTest script: the action runner shows the backend's own
message for a refusal or failure (in place or as a flash), flashes success once after the rerun,
the confirmation dialog acts only on confirm, and the shared display rules."""
from __future__ import annotations

import math

from streamlit.testing.v1 import AppTest

from console import kit


def _script() -> None:
    import streamlit as st

    from backend.access import Action, Role
    from backend.access.actor import Actor
    from backend.access.permissions import PermissionDenied
    from backend.errors import InputError
    from console import kit

    keys = kit.PageKeys("t")
    ss = st.session_state
    ss.setdefault("deleted", 0)

    def refuse() -> None:
        raise PermissionDenied(Actor("bob", "bob", Role.viewer), Action.delete_version)

    def bad_input() -> None:
        raise InputError("no such policy 'x'")

    def bug() -> None:
        raise ZeroDivisionError("boom")

    def delete() -> int:
        if ss.get("delete_fails"):
            raise InputError("the version is live")
        ss["deleted"] += 1
        return ss["deleted"]

    st.title("kit")
    kit.flash(keys)
    st.button("refused", key=keys("refused"), on_click=lambda: kit.run(keys, refuse, failed="Not deleted"))
    st.button("bug", key=keys("bug"), on_click=lambda: kit.run(keys, bug))
    if st.button("inline", key=keys("inline")):
        kit.run(keys, bad_input, inline=True)
    if st.button("save", key=keys("save")):
        kit.run(keys, lambda: 42, ok=lambda n: f"Saved item #{n}.", rerun=True)
    st.button("🗑️ Delete", key=keys("delete"), on_click=kit.ask, args=(keys, "delete"), kwargs={"name": "v3"})
    d = kit.asked(keys)
    if d and d["kind"] == "delete":
        kit.confirm(keys, "Delete this version?", "🗑️ Delete now", "delete", delete,
                    ok=lambda n: f"Deleted {d['name']} ({n}).", body=f"The version **{d['name']}** is dropped.")
    if st.button("save, dialog open", key=keys("save_open")):  # a runner's success leaves an open dialog alone
        kit.run(keys, lambda: 1, ok="Saved.")
    options = ss.get("options", [1, 2, 3])
    picked = kit.select("Experiment", options, keys("experiment"), format_func=lambda i: f"experiment {i}",
                        bind="query-params")
    st.caption(f"picked {picked}")


def app(query_params: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_function(_script, default_timeout=60)
    at.query_params.update(query_params or {})
    at.run()
    assert not at.exception, at.exception
    return at


def test_runner_shows_the_backends_message() -> None:
    at = app()
    at.button(key="t.refused").click().run()
    assert len(at.error) == 1 and at.error[0].value.startswith("Not deleted — access: bob")
    assert "may not delete an index version" in at.error[0].value
    at.run()  # a flash is shown once
    assert not at.error
    at.button(key="t.inline").click().run()
    assert [e.value for e in at.error] == ["input: no such policy 'x'"]
    at.button(key="t.bug").click().run()
    assert [e.value for e in at.error] == ["Unexpected error — ZeroDivisionError: boom"]


def test_success_flashes_after_the_rerun() -> None:
    at = app()
    at.button(key="t.save").click().run()
    assert not at.exception and [s.value for s in at.success] == ["Saved item #42."]
    at.run()
    assert not at.success


def test_confirmation_acts_only_on_confirm() -> None:
    at = app()
    at.button(key="t.delete").click().run()
    assert at.session_state["t.dialog"] == {"kind": "delete", "name": "v3"}
    assert "The version **v3** is dropped." in [m.value for m in at.markdown]
    at.run()  # still open across reruns, nothing done
    assert at.session_state["deleted"] == 0 and at.button(key="t.delete_confirm")
    at.session_state["delete_fails"] = True
    at.button(key="t.delete_confirm").click().run()
    assert [e.value for e in at.error] == ["input: the version is live"]  # in the dialog, which stays open
    assert at.session_state["deleted"] == 0 and "t.dialog" in at.session_state
    at.session_state["delete_fails"] = False
    at.button(key="t.delete_confirm").click().run()
    assert at.session_state["deleted"] == 1 and "t.dialog" not in at.session_state
    assert [s.value for s in at.success] == ["Deleted v3 (1)."]
    at.button(key="t.delete").click().run()
    at.button(key="t.save_open").click().run()
    assert "t.dialog" in at.session_state and at.session_state["deleted"] == 1


def test_select_follows_the_url_and_forgets_a_stale_choice() -> None:
    at = app({"t.experiment": "experiment 3"})  # a shared link: the widget's key is the query parameter
    assert at.selectbox(key="t.experiment").value == 3 and "picked 3" in [c.value for c in at.caption]
    at.session_state["options"] = [1, 2]  # experiment 3 is gone: the first option, no error
    at.run()
    assert not at.exception and at.selectbox(key="t.experiment").value == 1


def test_significant() -> None:
    assert kit.significant(0.01, 0.02, 0.10) and kit.significant(0.049, -0.3, -0.01)
    assert not kit.significant(0.05, 0.02, 0.10)  # p not under 0.05
    assert not kit.significant(0.01, -0.02, 0.10)  # the CI holds 0
    assert not kit.significant(0.01, 0.0, 0.10)  # touching 0 is holding it
    assert not kit.significant(math.nan, 0.02, 0.10) and not kit.significant(None, 0.02, 0.1)
    assert not kit.significant(0.01, math.nan, math.nan)


def test_formatters() -> None:
    assert [kit.money(x) for x in (None, 0, 0.0001234, 0.01234, 12.5, 1234.4)] == \
        ["—", "$0", "$0.000123", "$0.0123", "$12.50", "$1,234"]
    assert kit.money(0.0, 6) == "$0.000000" and kit.money(math.nan) == "—"
    assert [kit.duration(x) for x in (None, 0.42, 87.4, 1250)] == ["—", "0.4 ms", "87 ms", "1.25 s"]
    assert kit.pct(0.1234) == "12.3%" and kit.pct(0.5, 0) == "50%" and kit.pct(None) == kit.pct(math.nan) == "—"
    assert [kit.count(n) for n in (950, 12_345, 1_234_567)] == ["950", "12k", "1.23M"]
    assert kit.code("a`b") == "`a'b`"
    assert kit.PageKeys("ab")("policy_a") == "ab.policy_a"
