from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipeline.performance import capacity


class Command(BaseCommand):
    help = (
        "Current load, capacity and headroom; from the daily peaks of hourly arrivals in the history, the date "
        "the trend exceeds capacity (or none) and the workers that restore --headroom."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--headroom", type=float, default=0.3, help="Share of capacity to keep free at the peak (default 0.3)"
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        if not 0 <= o["headroom"] < 1:
            raise CommandError("--headroom is a share of capacity from 0 to below 1, e.g. 0.3")
        p = capacity.plan(o["headroom"])
        if o["json"]:
            self.stdout.write(json.dumps(p.as_dict(), indent=2))
            return
        out = self.stdout.write
        out(f"arrivals, last hour: {p.arrivals_last_hour:.3f} docs/s")
        if p.peak is not None:
            out(f"busiest hour of the last day: {p.peak:.3f} docs/s")
        cap = p.capacity
        if cap is not None:
            on = f" on {cap.runtime}" if cap.runtime else ""
            out(
                f"capacity: {cap.docs_per_second:.3f} docs/s ({cap.model}{on}, {cap.per_pod:.3f} docs/s per pod of "
                f"{cap.workers} workers x {cap.replicas} pods, {cap.how}, measured {cap.measured_at:%Y-%m-%d %H:%M})"
            )
        if p.headroom is not None:
            out(f"headroom: {p.headroom:.0%} (wanted {p.headroom_wanted:.0%})")
        if p.trend_per_day is not None:
            out(f"trend of the daily peak: {p.trend_per_day:+.4f} docs/s per day over {len(p.daily_peaks)} days")
        if p.exceeded_now:
            out(self.style.ERROR("arrivals exceed capacity now"))
        elif p.enough_history and cap is not None:
            exceeds = p.exceeds_on.isoformat() if p.exceeds_on else "never (not rising)"
            out(f"projected to exceed capacity on: {exceeds}")
        if p.workers_needed is not None or p.workers_note:
            needed = p.workers_needed if p.workers_needed is not None else "none suffice"
            out(f"workers needed: {needed} ({p.workers_note})")
        if p.needs:
            out(self.style.WARNING(p.needs))
