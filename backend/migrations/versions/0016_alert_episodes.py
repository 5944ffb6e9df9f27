"""At most one open episode per alert key: two replicas (or two request threads) crossing the same
budget threshold at once each opened an episode and each notified. Open duplicates left by that race
are closed first (the newest stays open).

Revision ID: 0016_alert_episodes
"""
import sqlalchemy as sa
from alembic import op

revision = "0016_alert_episodes"
down_revision = "0011_key_reservations"  # the ledger's chain (alerts comes from 0003_ledger)
branch_labels = None
depends_on = None

OPEN = sa.text("resolved_at IS NULL")


def upgrade() -> None:
    alerts = sa.table("alerts", sa.column("id"), sa.column("key"), sa.column("last_seen"), sa.column("resolved_at"))
    conn = op.get_bind()
    kept: set[str] = set()
    for aid, key, last_seen in conn.execute(sa.select(alerts.c.id, alerts.c.key, alerts.c.last_seen)
                                            .where(alerts.c.resolved_at.is_(None)).order_by(alerts.c.id.desc())):
        if key in kept:
            conn.execute(alerts.update().where(alerts.c.id == aid).values(resolved_at=last_seen))
        kept.add(key)
    op.create_index("uq_alerts_open_key", "alerts", ["key"], unique=True, sqlite_where=OPEN, postgresql_where=OPEN)


def downgrade() -> None:
    op.drop_index("uq_alerts_open_key", "alerts")
