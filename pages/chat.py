"""Chat tester: ask the index with a policy and see why each answer is what it is."""
import streamlit as st

from console import state
from console.chat import Conversation
from console.i18n import t
from console.policy_panel import PolicyPanel

services = state.get_services()
panel = PolicyPanel(services, "chat")
with st.sidebar:
    st.markdown(t("**⚙️ Policy**"))
    policy = panel.render()
retrieval_only = panel.retrieval_only

chat = Conversation(services, "chat")
title, tools = st.columns([3, 2], vertical_alignment="bottom")
title.title(t("💬 Chat tester"))
chat.render_history()
blocked = chat.blocked_reason(policy)
question = chat.question(blocked, retrieval_only)  # the input is pinned to the bottom wherever it is called
if not chat.history and question is None:
    chat.examples(disabled=blocked is not None)
if question is not None:
    chat.ask(question, policy, retrieval_only)
with tools:  # drawn last so it counts the answer just given
    chat.toolbar()
