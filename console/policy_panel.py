"""Sidebar knobs for a retrieval/generation policy: load a saved one, tweak it, save it as a
new version. Widget keys are namespaced by page (`<ns>.top_k`, console.kit.PageKeys), and the loaded policy's name
is mirrored to the URL (?policy=name) so a view can be linked and reloaded."""
from __future__ import annotations

import streamlit as st

from backend.access import Action
from backend.engine.policy import PROMPT_TEMPLATES, Policy
from backend.errors import RagError
from backend.services import Services
from console import kit
from console.access_view import need
from console.auth import current_actor
from console.i18n import t
from console.state import describe

KNOBS = ("top_k", "retrieval_mode", "fusion", "candidates", "rerank", "rerank_candidates", "prompt_template",
         "model", "temperature", "max_tokens", "index", "pipeline", "postprocessor")
REMEMBERED = (*KNOBS, "load", "retrieval_only")  # widget states that must survive a visit to another page
LIVE = "__live__"  # the index option meaning "whatever INDEX_ALIAS points at" (Policy.index None)


class PolicyPanel:
    def __init__(self, services: Services, ns: str):
        self.services, self.ns = services, ns
        self.key = kit.PageKeys(ns, icons=dict.fromkeys(kit.ICONS))  # the sidebar's notices have no icon
        self.retrieval_only = False

    # --- state ---------------------------------------------------------------------------
    def _fill(self, policy: Policy) -> None:
        """Put a policy into the widgets' state (only from callbacks or before the widgets exist)."""
        ss = st.session_state
        for k in KNOBS:
            ss[self.key(k)] = getattr(policy, k)
        ss[self.key("model")] = policy.model or ""
        ss[self.key("index")] = policy.index or LIVE
        ss[self.key("pipeline")] = policy.pipeline or ""
        ss[self.key("postprocessor")] = policy.postprocessor or ""
        ss[self.key("base")] = policy
        ss[self.key("load")] = policy.name

    def _load(self, name: str) -> None:
        try:
            policy = self.services.policies.get(name)
        except RagError as exc:
            kit.note(self.key, t("{error}; showing the default policy", error=describe(exc)), "warning")
            policy = Policy()
        self._fill(policy)
        if policy.name == "default" and policy.version is None:
            st.query_params.pop("policy", None)
        else:
            st.query_params["policy"] = policy.name

    def _on_load(self) -> None:
        self._load(st.session_state[self.key("load")])

    def _on_save(self) -> None:
        ss = st.session_state
        name = (ss.get(self.key("save_name")) or "").strip()

        def save() -> Policy:
            policy = self.current().model_copy(update={"name": name, "version": None})
            return self.services.policies.save(policy, current_actor(), note=ss.get(self.key("save_note"), ""))

        stored = kit.run(self.key, save, failed=t("Not saved"),
                         ok=lambda p: t("Saved as **{name} v{version}**", name=p.name, version=p.version))
        if stored is not None:
            self._fill(stored)
            st.query_params["policy"] = stored.name

    def init(self) -> None:
        """First visit of a session: the policy named in the URL, else the default one. Later
        visits restore the knobs: Streamlit drops a widget's state when a run (another page)
        does not draw it."""
        ss = st.session_state
        if self.key("base") not in ss:
            self._load(st.query_params.get("policy", "default"))
        for name, value in ss.get(self.key("remembered"), {}).items():
            ss.setdefault(self.key(name), value)

    def _remember(self) -> None:
        ss = st.session_state
        ss[self.key("remembered")] = {name: ss[self.key(name)] for name in REMEMBERED if self.key(name) in ss}

    # --- the policy the widgets describe ----------------------------------------------------
    def current(self) -> Policy:
        ss = st.session_state
        base: Policy = ss[self.key("base")]
        values = {k: ss[self.key(k)] for k in KNOBS}
        values["model"] = values["model"].strip() or None
        values["index"] = None if values["index"] == LIVE else values["index"]
        values["pipeline"] = values["pipeline"] or None
        values["postprocessor"] = None if values["pipeline"] else values["postprocessor"] or None  # a pipeline has its own
        edited = values != {k: getattr(base, k) for k in KNOBS}
        if edited:
            return Policy(name=f"{base.name} (edited)", **values)
        return base.model_copy(update=values)

    # --- widgets -----------------------------------------------------------------------------
    def render(self) -> Policy:
        """Draw the knobs (call inside `with st.sidebar`) and return the policy they describe;
        the 'retrieval only' switch (not part of a policy) is left in `self.retrieval_only`."""
        self.init()
        k, s = self.key, self.services.settings
        self.retrieval_only = st.toggle(t("Retrieval only"), key=k("retrieval_only"),
                                        help=t("Show the sources and the exact prompt; never call the model"))
        try:
            saved = self.services.policies.list()
        except Exception as exc:  # database down: knobs still work, loading/saving does not
            saved = []
            st.warning(t("Saved policies unavailable — {error}", error=describe(exc)))
        versions = {p.name: p.versions for p in saved}
        names = list(dict.fromkeys(["default", *versions, st.session_state[k("load")]]))
        shown = {n: f"{n} (v{versions[n]})" if n in versions else t("{name} (built-in)", name=n) for n in names}
        st.selectbox(t("Policy"), names, key=k("load"), on_change=self._on_load, format_func=shown.__getitem__,
                     help=t("Load the latest version of a saved policy. The URL keeps its name (?policy=…)."))

        st.number_input(t("Top k (sources in the prompt)"), 1, 200, key=k("top_k"))
        st.radio(t("Retrieval"), ["hybrid", "dense", "sparse"], key=k("retrieval_mode"), horizontal=True,
                 help=t("dense: cosine on embeddings · sparse: BM25 · hybrid: both, fused"))
        hybrid = st.session_state[k("retrieval_mode")] == "hybrid"
        c1, c2 = st.columns(2)
        c1.selectbox(t("Fusion"), ["rrf", "dbsf"], key=k("fusion"), disabled=not hybrid, format_func=str.upper,
                     help=t("RRF: reciprocal rank fusion · DBSF: distribution-based score fusion"))
        c2.number_input(t("Candidates"), 1, 500, key=k("candidates"),
                        help=t("Hits fetched from each retriever before fusion"))
        c1, c2 = st.columns(2)
        c1.toggle(t("Rerank"), key=k("rerank"),
                  help=t("Re-score candidates ({reranker})", reranker=self.services.engine.reranker.name))
        c2.number_input(t("Rerank pool"), 1, 200, key=k("rerank_candidates"), disabled=not st.session_state[k("rerank")])
        st.selectbox(t("Prompt template"), list(PROMPT_TEMPLATES), key=k("prompt_template"))
        llm = bool(s.openai_base_url)
        st.text_input(t("Model"), key=k("model"), placeholder=s.llm_model, disabled=not llm,
                      help=t("Empty: the LLM_MODEL setting") if llm else t("No LLM configured: answers are extractive"))
        c1, c2 = st.columns(2)
        c1.number_input(t("Temperature"), 0.0, 2.0, step=0.1, key=k("temperature"), disabled=not llm)
        c2.number_input(t("Max tokens"), 1, 8192, step=64, key=k("max_tokens"), disabled=not llm)
        live = t("{alias} (live alias)", alias=s.index_alias)
        st.selectbox(t("Index"), self._index_options(), key=k("index"), format_func=lambda o: live if o == LIVE else o,
                     help=t("The live alias follows every release; a collection pins one index version."))

        chosen = st.session_state.setdefault(k("pipeline"), "")  # sessions from before the field existed
        pipelines = list(dict.fromkeys(["", *s.pipeline_factory_list, chosen]))
        ours = t("our engine's stages")
        st.selectbox(t("Pipeline"), pipelines, key=k("pipeline"), format_func=lambda f: f or ours,
                     help=t("A team's own LlamaIndex pipeline; the choices are the PIPELINE_FACTORIES setting"))
        chosen = st.session_state.setdefault(k("postprocessor"), "")
        factories = list(dict.fromkeys(["", *s.pipeline_factory_list, chosen]))
        rerank = t("our rerank stage")
        st.selectbox(t("Postprocessor"), factories, key=k("postprocessor"), format_func=lambda f: f or rerank,
                     disabled=bool(st.session_state[k("pipeline")]),
                     help=t("A LlamaIndex node postprocessor run on our retrieval instead of our rerank stage; "
                            "the choices are the PIPELINE_FACTORIES setting"))

        policy = self.current()
        kit.flash(self.key)
        self._save_form(policy)
        self._remember()
        return policy

    def _index_options(self) -> list[str]:
        try:
            collections = self.services.store.collections()
        except RagError:
            collections = []
        chosen = st.session_state.get(self.key("index"), LIVE)
        return list(dict.fromkeys([LIVE, *collections, chosen]))

    def _save_form(self, policy: Policy) -> None:
        base: Policy = st.session_state[self.key("base")]
        state = t("unsaved edits") if policy.name.endswith("(edited)") else (
            t("saved as v{version}", version=base.version) if base.version else t("built-in defaults"))
        st.caption(t("Using **{policy}** — {state}", policy=policy.label(), state=state))
        with st.popover(t("💾 Save as policy"), width="stretch"):
            with st.form(self.key("save_form"), border=False):
                st.text_input(t("Name"), value=base.name, key=self.key("save_name"), max_chars=200)
                st.text_input(t("Note"), key=self.key("save_note"), placeholder=t("why this version (optional)"))
                st.form_submit_button(t("Save new version"), type="primary", key=self.key("save"), on_click=self._on_save,
                                      **need(Action.save_policy))
