"""BenchmarkRun in the admin: runs with regressions flagged, each run's comparison table, and the Trends page
(registered from testing.apps: admin.py belongs to the operations tests)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils.html import format_html, format_html_join

from embedportal.admin import ReadOnlyAdmin
from testing.benchmarks.regression import regressions
from testing.benchmarks.trends import machines, trends
from testing.choices import BenchmarkSuite
from testing.models import BenchmarkRun


class RegressionFilter(admin.SimpleListFilter):
    title = "regression"
    parameter_name = "regressed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Regressed"), ("no", "No regression")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[BenchmarkRun]) -> QuerySet[BenchmarkRun]:
        chosen = {"yes": {"regressions__gt": 0}, "no": {"regressions": 0}}.get(self.value())
        return queryset.filter(**chosen) if chosen else queryset


@admin.register(BenchmarkRun)
class BenchmarkRunAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "suite", "trigger", "regression", "version", "machine_fingerprint", "duration")
    list_filter = (RegressionFilter, "suite", "trigger", "machine_fingerprint")
    search_fields = ("code_version", "note", "machine_fingerprint")
    date_hierarchy = "started_at"
    show_full_result_count = False
    fields = (
        "started_at",
        "suite",
        "trigger",
        "note",
        "duration_seconds",
        "code_version",
        "config_fingerprint",
        "machine_fingerprint",
        "machine",
        "regressions",
        "figures",
    )
    readonly_fields = fields
    change_list_template = "admin/testing/benchmarkrun/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        trends_page = path("trends/", self.admin_site.admin_view(self.trends_view), name="testing_benchmarkrun_trends")
        return [trends_page, *super().get_urls()]

    def trends_view(self, request: HttpRequest) -> HttpResponse:
        known = machines()
        machine = request.GET.get("machine") or _this_machine(known)
        suite = request.GET.get("suite") if request.GET.get("suite") in BenchmarkSuite.values else BenchmarkSuite.QUICK
        return self.admin_page(
            request,
            "admin/testing/benchmarkrun/trends.html",
            "Benchmark trends",
            machines=known,
            suites=BenchmarkSuite.values,
            trends=trends(machine, suite),
        )

    @admin.display(description="regression", ordering="regressions")
    def regression(self, obj: BenchmarkRun) -> str:
        if not obj.regressions:
            return "—"
        names = ", ".join(f"{b}.{f}" for b, f in regressions(obj.comparison))
        return format_html('<strong style="color:#ba2121">{} regressed</strong>: {}', obj.regressions, names)

    @admin.display(description="code", ordering="code_version")
    def version(self, obj: BenchmarkRun) -> str:
        return obj.code_version[:12]

    @admin.display(description="seconds", ordering="duration_seconds")
    def duration(self, obj: BenchmarkRun) -> str:
        return f"{obj.duration_seconds:.0f}"

    @admin.display(description="figures and comparison")
    def figures(self, obj: BenchmarkRun) -> str:
        rows = []
        for benchmark, figures in obj.results.items():
            for name, data in figures.items():
                verdict = obj.comparison.get(benchmark, {}).get(name, {})
                steps = "; ".join(
                    f"{p['change']:+.0%} since {p['at'][:16]} ({p['code_version'][:10]})"
                    for p in verdict.get("change_points", [])
                )
                median = f"{data['median']:.4g} {data.get('unit', '')}"
                samples = ", ".join(f"{s:.4g}" for s in data["samples"])
                baseline = _format(verdict.get("baseline_median"), ".4g")
                change, p_value = _format(verdict.get("change"), "+.1%"), _format(verdict.get("p_value"), ".3g")
                said = verdict.get("verdict", "")
                rows.append((benchmark, name, median, samples, baseline, change, p_value, said, steps))
        header = ("benchmark", "figure", "median", "samples", "baseline", "change", "p (Welch)", "verdict", "steps")
        return format_html(
            "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<th>{}</th>", ((h,) for h in header)),
            format_html_join("", "<tr>" + "<td>{}</td>" * len(header) + "</tr>", rows),
        )


def _format(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _this_machine(known: list[str]) -> str:
    """The machine serving the page when it has runs, else the one that ran last (maybe on another host)."""
    from testing.benchmarks.suite import machine, machine_fingerprint

    here = machine_fingerprint(machine())
    return here if here in known or not known else known[0]
