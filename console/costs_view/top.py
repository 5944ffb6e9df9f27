"""The 🏆 Top users & questions tab: the ten costliest of each, a click on a bar lists its rows."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from backend.ledger.costs import Costs
from backend.ledger.queries import Filters, TimeRange
from console import charts
from console.costs_view.common import download, frame, keys
from console.costs_view.rows import show_rows
from console.i18n import t


def _ranking(labels: list[str], cost: pd.Series, color: str, title: str, customdata: list, hover: str):  # noqa: ANN202
    """Horizontal bars, the costliest on top."""
    fig = charts.new(title, height=360, legend=False)
    fig.add_bar(x=cost, y=labels, orientation="h", marker_color=color, customdata=customdata, hovertemplate=hover)
    fig.update_layout(xaxis=dict(tickformat="$,.2f"), yaxis=dict(autorange="reversed", automargin=True, type="category"))
    return fig


def top_charts(costs: Costs, r: TimeRange, f: Filters) -> None:
    left, right = st.columns(2)
    with left:
        users = frame(costs.queries.top_users(r, f, 10))
        if users.empty:
            st.info(t("No users in this range."), icon="📭")
        else:
            users = users.sort_values("cost_usd", ascending=False, kind="stable").reset_index(drop=True)
            fig = _ranking([charts.text(u) for u in users["user"]], users["cost_usd"], "#4e79a7",
                           t("Top users by cost"),
                           [[u, charts.text(u), int(n)] for u, n in zip(users["user"], users["requests"])],
                           f"{t('user')}: %{{customdata[1]}}<br>{t('cost')}: %{{x:$,.4f}}<br>{t('requests')}: "
                           "%{customdata[2]:,}<extra></extra>")
            point = charts.show(fig, keys("users_chart"), fields=("user",))
            download(users, "top-users", "users")
            if point:
                user = str(point["user"])
                show_rows(costs.queries.rows(r, f, dim="user", value=user), t("user {user}", user=user), "user")
    with right:
        qs = frame(costs.queries.top_questions(r, f, 10))
        if qs.empty:
            st.info(t("No questions in this range."), icon="📭")
        else:
            qs["question"] = qs["question"].fillna("?")
            labels = [f"{i + 1}. {charts.text(charts.shorten(x, 49))}" for i, x in enumerate(qs["question"])]
            data = [[h, q, charts.text(q, wrap=80), int(n), float(s)]
                    for h, q, n, s in zip(qs["question_hash"], qs["question"], qs["requests"], qs["saved_usd"])]
            fig = _ranking(labels, qs["cost_usd"], "#e15759", t("Top questions by cost"), data,
                           f"{t('question')}: %{{customdata[2]}}<br>{t('cost')}: %{{x:$,.4f}}<br>{t('requests')}: "
                           f"%{{customdata[3]:,}}<br>{t('cache saved')}: %{{customdata[4]:$,.4f}}<extra></extra>")
            point = charts.show(fig, keys("questions_chart"), fields=("question_hash", "question"))
            download(qs, "top-questions", "questions")
            if point:
                qh, text = str(point["question_hash"]), str(point["question"])
                show_rows(costs.queries.rows(r, f, question_hash=qh), t("question: {text}", text=text[:80]), "question")
    st.caption(t("Source: ledger. Click a bar to list its ledger rows."))
