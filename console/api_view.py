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

keys = kit.PageKeys("api")


def base_url() -> str:
    """The console's own origin (as the browser sees it) plus /api/v1."""
    url = st.context.url or "http://127.0.0.1:8501/"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/api/v1"


def examples(base: str) -> None:
    st.subheader("🔌 Call it")
    st.markdown(f"Base URL **`{base}`** · interactive docs at [`{base}/docs`]({base}/docs) · "
                f"schema at `{base}/openapi.json` · Prometheus at `/metrics`.")
    if can(current_actor(), Action.manage_keys):
        st.caption("Create an API key on the **Access** page (the secret is shown once), or from the shell.")
    else:
        st.caption("Ask an admin for an API key (Access page, or `python -m backend keys create NAME --role viewer`).")
    curl, python = st.tabs(["curl", "Python (OpenAI SDK)"])
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
    if r["failing_open"]:
        st.warning(f"Rate limiter **degraded**: its Redis is unreachable, so requests are let through without a "
                   f"limit ({r['fail_open_total']:,} so far) — {r['last_error']}", icon="🟠")
    else:
        st.caption(f"🟢 Rate limit {r['limit']} per key, counted in {r['backend']}.")


def recent(services: Services) -> None:
    st.subheader("📡 Latest live requests")
    rows = services.costs.queries.recent_requests(source="api", limit=50)
    if not rows:
        st.info("No API request yet: send one with the examples above (or `python -m backend replay`).", icon="📭")
        return
    st.dataframe([{"time (UTC)": f"{r.ts:%Y-%m-%d %H:%M:%S}", "key": r.api_key, "end user": r.user,
                   "variant": r.variant or "—", "status": r.status + (" (cache)" if r.cache_hit else ""),
                   "latency": kit.duration(r.total_ms),
                   "cost": f"${r.cost_usd:,.6f}", "request id": r.request_id} for r in rows],
                 hide_index=True, width="stretch", key=keys("recent"))
