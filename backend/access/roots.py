"""The server folders the console and the API may index: only those under INGEST_ROOTS.

Without this, anyone who may rebuild could index any readable folder of the server (`/etc`) and
read it back through chat. Paths are resolved first, so `..` and symlinks cannot step outside."""
from __future__ import annotations

from pathlib import Path

from backend.errors import InputError
from backend.settings import Settings


def check_ingest_root(path: Path, settings: Settings) -> Path:
    """The resolved path when it lies inside an allowed root; else a refusal naming the setting."""
    resolved = Path(path).expanduser().resolve()
    roots = [r.expanduser().resolve() for r in settings.ingest_root_paths]
    if any(resolved == r or resolved.is_relative_to(r) for r in roots):
        return resolved
    allowed = ", ".join(str(r) for r in roots) or "none"
    raise InputError(f"{path} is outside the folders the console may index (INGEST_ROOTS: {allowed}); "
                     "upload the files instead, or ask an admin to add the folder to INGEST_ROOTS", part="source")
