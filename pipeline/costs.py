"""Each collection's month's spend (CollectionCost), its projection at the last PACE_HOURS' pace and its
budget, for /metrics (the cost alerts), the admin and the API."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.utils import timezone

from embedportal.collectors import DatabaseCollector, fresh

# Long enough to smooth batches, short enough to show a runaway re-embed within the hour.
PACE_HOURS = 6

_SPEND_SQL = """
SELECT c.name, c.monthly_budget_usd,
       CASE WHEN k.month = %(month)s THEN k.month_cost_usd ELSE 0 END,
       (SELECT coalesce(sum(t.cost_usd), 0) FROM pipeline_batchtiming t
         WHERE t.collection_id = c.id AND t.finished_at >= %(pace_since)s)
  FROM pipeline_collection c LEFT JOIN pipeline_collectioncost k ON k.collection_id = c.id
 WHERE (c.monthly_budget_usd IS NOT NULL OR k.cost_usd > 0) AND (%(collection)s::int IS NULL OR c.id = %(collection)s)
 ORDER BY c.name
"""


@dataclass(frozen=True)
class Spend:
    collection: str
    budget_usd: float | None
    month_usd: float
    projected_usd: float  # the month's spend if the last PACE_HOURS' pace held to its end

    def as_text(self) -> str:
        if self.budget_usd is None:
            return f"${self.month_usd:.2f} this month (no budget)"
        share = self.month_usd / self.budget_usd if self.budget_usd else float("inf")
        return (
            f"${self.month_usd:.2f} of ${self.budget_usd:.2f} this month ({share:.0%}), "
            f"on pace for ${self.projected_usd:.2f}"
        )


def spends(cur, now: datetime | None = None, collection_id: int | None = None) -> list[Spend]:
    """Every collection with a budget or any spend (or the one given, if it has)."""
    now = now or timezone.now()
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(start.year, start.month)[1]
    left = (start + timedelta(days=days) - now).total_seconds()
    cur.execute(
        _SPEND_SQL,
        {"month": start.date(), "pace_since": now - timedelta(hours=PACE_HOURS), "collection": collection_id},
    )
    return [
        Spend(name, budget, month, month + recent / (PACE_HOURS * 3600) * left)
        for name, budget, month, recent in cur.fetchall()
    ]


def spend_of(collection_id: int) -> Spend | None:
    with connection.cursor() as cur:
        found = spends(cur, collection_id=collection_id)
    return found[0] if found else None


class CostCollector(DatabaseCollector):
    """The month's spend, its projection and the budget per collection (listed in
    EMBEDPORTAL_METRICS_COLLECTORS); embedding_pipeline_cost_usd_total is the workers' counter."""

    subject = "cost"
    families = fresh(
        ("embedding_pipeline_cost_month_usd", "US dollars spent embedding this calendar month (UTC).", ["collection"]),
        (
            "embedding_pipeline_cost_month_projected_usd",
            f"This month's spend if the last {PACE_HOURS} hours' pace held to the month's end.",
            ["collection"],
        ),
        ("embedding_pipeline_cost_budget_usd", "A collection's monthly embedding budget.", ["collection"]),
    )

    def fill(self, cur, month, projected, budget) -> None:
        for spend in spends(cur):
            month.add_metric([spend.collection], spend.month_usd)
            projected.add_metric([spend.collection], round(spend.projected_usd, 6))
            if spend.budget_usd is not None:
                budget.add_metric([spend.collection], spend.budget_usd)
