"""The two policies being compared, A and B (any two saved policy versions or the built-in default,
mirrored to ?a= and ?b= so the page as shown can be linked), and the 🧾 Policy diff tab: what
changed between them."""
from __future__ import annotations

import streamlit as st

from backend.engine.policy import Policy
from backend.errors import RagError
from backend.services import Services
from console import kit
from console.ab_view.common import BUILTIN, SS, headers, keys, load_policy, option_label, policy_options
from console.ab_view.rows import changed_fields, diff_rows
from console.i18n import t
from console.markup import escape_md
from console.state import describe


def pickers(services: Services) -> tuple[Policy, Policy]:
    """A and B: any two saved policy versions (or the built-in default)."""
    try:
        options = policy_options(services)
    except RagError as exc:
        st.error(t("Policies unavailable — {error}", error=describe(exc)), icon="🛑")
        st.stop()
    saved = [o for o in options if o != BUILTIN]
    kit.from_url(keys("a"), "a", options, BUILTIN)
    kit.from_url(keys("b"), "b", options, saved[0] if saved else BUILTIN)
    left, right = st.columns(2)
    left.selectbox(t("Policy A (baseline)"), options, key=keys("a"), format_func=option_label,
                   on_change=kit.to_url, args=(keys("a"), "a"))
    right.selectbox(t("Policy B (challenger)"), options, key=keys("b"), format_func=option_label,
                    on_change=kit.to_url, args=(keys("b"), "b"))
    for name in ("a", "b"):  # a link without them gets them: the page as shown is shareable
        if st.query_params.get(name) != SS[keys(name)]:
            kit.to_url(keys(name), name)
    a, b = load_policy(services, SS[keys("a")]), load_policy(services, SS[keys("b")])
    if not saved:
        st.caption(t("Only the built-in policy exists: save variants from the chat tester's sidebar (💾 Save as policy)."))
    return a, b


def policy_diff_view(a: Policy, b: Policy) -> None:
    changed = changed_fields(a, b)
    if a.label() == b.label():
        st.markdown(t("A and B are the same policy version (**{policy}**): pick another one above.",
                      policy=escape_md(a.label())))
    elif changed:
        fields = ", ".join(f"`{f}`" for f in changed)
        if len(changed) > 1:
            st.markdown(t("**{b}** differs from **{a}** in **{n}** fields: {fields}", b=escape_md(b.label()),
                          a=escape_md(a.label()), n=len(changed), fields=fields))
        else:
            st.markdown(t("**{b}** differs from **{a}** in **1** field: {fields}", b=escape_md(b.label()),
                          a=escape_md(a.label()), fields=fields))
    else:
        st.markdown(t("**{a}** and **{b}** answer the same way (no field differs but the name).",
                      a=escape_md(a.label()), b=escape_md(b.label())))
    only = st.toggle(t("Changed fields only"), key=keys("diff_changed_only"))
    rows = diff_rows(a, b, only)
    st.dataframe(rows, hide_index=True, width="stretch", key=keys("diff_table"),
                 column_config=headers(rows, field=st.column_config.TextColumn(width="small"),
                                       change=st.column_config.TextColumn(width="small")))
    st.caption(t("Policy versions are never rewritten: saving a policy again creates its next version."))
