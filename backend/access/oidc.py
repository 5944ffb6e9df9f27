"""Roles of OpenID Connect users, from the OIDC_ROLES mapping (e-mail, e-mail domain or group)."""
from __future__ import annotations

from backend.access.actor import Role
from backend.errors import InputError


def parse_role_map(spec: str) -> list[tuple[str, Role]]:
    """'alice@x.org=admin, @x.org=viewer, group:ops=operator' -> [(key, role)]; keys lower-cased."""
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key, sep, role = part.rpartition("=")
        if not sep or not key.strip():
            raise InputError(f"OIDC_ROLES entry {part!r} is not KEY=ROLE", part="settings")
        out.append((key.strip().lower(), Role.parse(role)))
    return out


def role_for(email: str | None, groups: list[str] | None, spec: str, unknown: str = "none") -> Role | None:
    """The highest role any mapping entry gives this user; `unknown` ('none' or 'viewer') otherwise."""
    email = (email or "").strip().lower()
    domain = "@" + email.rpartition("@")[2] if "@" in email else None
    wanted = {email} | ({domain} if domain else set()) | {f"group:{g}".lower() for g in (groups or []) if isinstance(g, str)}
    matched = [role for key, role in parse_role_map(spec) if key in wanted]
    if matched:
        return max(matched)
    return Role.viewer if unknown == "viewer" else None
