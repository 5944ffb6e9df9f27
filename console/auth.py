"""Who is acting. Every state-changing backend call takes this user, so login slots in here
(e.g. `st.user` behind OIDC, or a reverse-proxy header) without touching any page."""
from __future__ import annotations

LOCAL_USER = "local-user"


def current_user() -> str:
    """The acting user's id; a fixed local user until login exists."""
    return LOCAL_USER
