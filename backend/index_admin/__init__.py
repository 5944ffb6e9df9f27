"""Index admin: versions, shadow rebuilds, the evaluation gate, atomic promote and rollback."""
from backend.index_admin.service import DELETED, GATE, REBUILD, AliasChange, IndexAdmin, StoredGate, VersionInfo

__all__ = ["DELETED", "GATE", "REBUILD", "AliasChange", "IndexAdmin", "StoredGate", "VersionInfo"]
