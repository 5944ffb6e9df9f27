"""The token ledger: one row per model call the engine makes (chat, embedding, rerank, judge),
priced when written, with daily roll-ups that keep the dashboard's queries fast.

- `calls`: what the engine hands over (RequestContext, ModelCall) and the Meter interface;
  no SQL there, so the engine depends on nothing but these types.
- `store`: the tables and the write path (row + roll-ups in one transaction).
- `queries`: every dashboard aggregation, in SQL.
- `meter`: the Meter the services wire into the engine (ledger + budgets + Prometheus + alerts).
- `pricing`, `budgets`, `alerts`, `metrics` (Prometheus), `journal` (rows kept on disk while the
  database is away), `buckets` (time buckets); `costs` wires them into one service.

May import: access, settings, errors, text, db, exports; never the engine (the engine imports
`calls`)."""
from backend.ledger.calls import Meter, ModelCall, NullMeter, RequestContext

__all__ = ["Meter", "ModelCall", "NullMeter", "RequestContext"]
