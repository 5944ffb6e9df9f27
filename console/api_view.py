"""The API page: where the HTTP API answers, how to call it, the rate limiter's state, and the
latest live requests from the ledger (API traffic only)."""
from __future__ import annotations

from urllib.parse import urlsplit

import streamlit as st

from backend.access import Action, can
from backend.api.ratelimit import limiter_status
from backend.services import Services
from console import kit
from console.auth import current_actor
from console.i18n import N_, t

keys = kit.PageKeys("api")
# Column headers: the table keeps these names, shown in the session's language.
RECENT_COLUMNS = (N_("time (UTC)"), N_("key"), N_("end user"), N_("variant"), N_("status"), N_("latency"), N_("cost"),
                  N_("request id"))


def base_url() -> str:
    """The console's own origin (as the browser sees it) plus /api/v1."""
    url = st.context.url or "http://127.0.0.1:8501/"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/api/v1"


def examples(base: str) -> None:
    st.subheader(t("🔌 Call it"))
    st.markdown(t("Base URL **`{base}`** · interactive docs at [`{base}/docs`]({base}/docs) · "
                  "schema at `{base}/openapi.json` · Prometheus at `/metrics`.", base=base))
    if can(current_actor(), Action.manage_keys):
        st.caption(t("Create an API key on the **Access** page (the secret is shown once), or from the shell."))
    else:
        st.caption(t("Ask an admin for an API key (Access page, or `python -m backend keys create NAME --role viewer`)."))
    curl, python = st.tabs([t("curl"), t("Python (OpenAI SDK)")])
    curl.code(f"""curl -s {base}/query \\
  -H "Authorization: Bearer $RAG_API_KEY" -H "X-End-User: alice" \\
  -H 'Content-Type: application/json' \\
  -d '{{"question": "Does aspirin reduce heart attack risk?"}}'""", language="bash")
    python.code(f"""from openai import OpenAI

client = OpenAI(base_url="{base}", api_key=RAG_API_KEY)
reply = client.chat.completions.create(
    model="rag",  # the live release; or the name of a saved policy
    messages=[{{"role": "user", "content": "Does aspirin reduce heart attack risk?"}}],
)
print(reply.choices[0].message.content)
print(reply.model_extra["sources"][0]["doc_id"])""", language="python")


def rate_limiter() -> None:
    rows = limiter_status()
    if not rows:
        return
    r = rows[0]
    if r.failing_open:
        st.warning(t("Rate limiter **degraded**: its Redis is unreachable, so requests are let through without a "
                     "limit ({n} so far) — {error}", n=f"{r.fail_open_total:,}", error=r.last_error), icon="🟠")
    else:
        st.caption(t("🟢 Rate limit {limit} per key, counted in {backend}.", limit=f"{r.limit} per {r.per} {r.unit}",
                     backend=r.backend))


def recent(services: Services) -> None:
    st.subheader(t("📡 Latest live requests"))
    rows = services.costs.queries.recent_requests(source="api", limit=50)
    if not rows:
        st.info(t("No API request yet: send one with the examples above (or `python -m backend replay`)."), icon="📭")
        return
    st.dataframe([{"time (UTC)": kit.when(r.ts, seconds=True), "key": r.api_key, "end user": r.user,
                   "variant": r.variant or "—", "status": r.status + (t(" (cache)") if r.cache_hit else ""),
                   "latency": kit.duration(r.total_ms),
                   "cost": f"${r.cost_usd:,.6f}", "request id": r.request_id} for r in rows],
                 hide_index=True, width="stretch", key=keys("recent"), column_config=kit.columns(RECENT_COLUMNS))
