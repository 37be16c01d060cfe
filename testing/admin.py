from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from audit import trail
from embedportal.admin import ReadOnlyAdmin, WrittenBySystem
from pipeline.access import TeamScoped, names_hidden, without_hidden_names, without_hidden_targets
from pipeline.models import sees_all_collections
from testing.benchmarks.regression import regressions
from testing.benchmarks.trends import machines, trends
from testing.choices import BenchmarkSuite, Category, Condition, RunStatus, Trigger
from testing.coverage import coverage
from testing.flaky import flaky_scenarios
from testing.models import NO_RUNNER, BenchmarkRun, RunInProgress, RunnerHeartbeat, TestResult, TestRun, queued_note
from testing.registry import UnknownSelection
from testing.tasks import queue_run

# A benchmark figure's comparison as shown, with its format: baseline, change, p (Welch).
COMPARED = (("baseline_median", ".4g"), ("change", "+.1%"), ("p_value", ".3g"))


class TestResultInline(WrittenBySystem, admin.TabularInline):
    changeable = True
    model = TestResult
    fields = ("scenario", "category", "component", "target", "outcome", "attempts", "duration_seconds", "message")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[TestResult]:
        return without_hidden_targets(super().get_queryset(request), request.user)


@admin.register(TestRun)
class TestRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "trigger",
        "status",
        "started_at",
        "duration_seconds",
        "counts",
        "requested_by",
        "code_version",
    )
    list_filter = ("status", "trigger")
    search_fields = ("requested_by", "code_version", "config_fingerprint")
    readonly_fields = [f.name for f in TestRun._meta.fields]
    inlines = [TestResultInline]
    actions = ["cancel_runs"]
    change_list_template = "admin/testing/testrun/change_list.html"
    date_hierarchy = "started_at"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("run-now/", view(self.run_now_view), name="testing_testrun_run_now"),
            path("flaky/", view(self.flaky_view), name="testing_testrun_flaky"),
            path("coverage/", view(self.coverage_view), name="testing_testrun_coverage"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        queued = TestRun.objects.filter(status=RunStatus.QUEUED).first()
        if queued is not None and request.method == "GET":
            self.message_user(request, f"Test run {queued.pk} is {queued_note(queued)}.", messages.WARNING)
        return super().changelist_view(request, extra_context)

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> TestRun | None:
        run = super().get_object(request, object_id, from_field)
        if run is not None:  # shown read-only: another team's collections asked for are left out
            run.selection = without_hidden_names(run.selection, request.user, run.finished_at)
        return run

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("testing.run_testrun")

    @admin.action(description="Cancel selected runs (queued or running)", permissions=["run"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[TestRun]) -> None:
        # The selection is counted first: a cancelled run may no longer match the list's filter (queued).
        runs = list(queryset)
        # A run naming another team's collection is that team's to cancel, as in the API.
        own = [run.pk for run in runs if not names_hidden(run.selection, request.user, run.finished_at)]
        cancelled = TestRun.objects.filter(pk__in=own).cancel(request.user.get_username())
        others = f"; {len(runs) - len(own)} name another team's collection" if len(own) < len(runs) else ""
        self.message_user(
            request,
            f"Cancelled {cancelled} run(s); {len(own) - cancelled} had already finished{others}. "
            "A running run stops after its current scenario.",
            messages.SUCCESS,
        )

    def run_now_view(self, request: HttpRequest) -> HttpResponse:
        """ "Run tests now": queued for the test runner as the API does (one queued run at a time)."""
        changelist = HttpResponseRedirect(reverse("admin:testing_testrun_changelist"))
        if request.method != "POST":
            return changelist
        if not self.has_run_permission(request):
            raise PermissionDenied
        category = request.POST.get("category", "")
        try:
            run, tester = queue_run(
                requested_by=request.user.get_username(),
                trigger=Trigger.API,
                categories=[category] if category in Category.values else [],
                quick=request.POST.get("quick") == "1",
            )
        except (RunInProgress, UnknownSelection) as exc:
            self.message_user(request, f"Not started: {exc}.", messages.WARNING)
            return changelist
        trail.admin(request, "run", TestRun.objects.filter(pk=run.pk), target=f"test run {run.pk}")
        waiting = "" if RunnerHeartbeat.objects.alive().exists() else f"; {NO_RUNNER}"
        self.message_user(
            request,
            f"Test run {run.pk} queued ({len(tester.selected)} scenarios){waiting}.",
            messages.SUCCESS if not waiting else messages.WARNING,
        )
        return HttpResponseRedirect(reverse("admin:testing_testrun_change", args=[run.pk]))

    def flaky_view(self, request: HttpRequest) -> HttpResponse:
        title = "Flaky scenarios (last 14 days)"
        return self.admin_page(request, "admin/testing/flaky.html", title, flaky=flaky_scenarios())

    def coverage_view(self, request: HttpRequest) -> HttpResponse:
        cover = coverage()
        return self.admin_page(
            request,
            "admin/testing/coverage.html",
            "Critical-path coverage (last 7 days)",
            coverage=cover,
            percent=round(100 * cover.ratio),
            conditions=Condition.values,
        )


@admin.register(RunnerHeartbeat)
class RunnerHeartbeatAdmin(ReadOnlyAdmin):
    """Test runner processes (`run_test_runner`): a queued run waits for one of these."""

    list_display = ("runner", "run_id", "started_at", "beat_at")
    search_fields = ("runner",)
    readonly_fields = list_display


@admin.register(TestResult)
class TestResultAdmin(TeamScoped, ReadOnlyAdmin):
    list_display = (
        "scenario_history",
        "run",
        "outcome",
        "category",
        "component",
        "target",
        "attempts",
        "duration_seconds",
        "started_at",
    )
    list_filter = ("outcome", "category", "component", "run__trigger")
    search_fields = ("scenario", "message", "target")
    list_select_related = ("run",)
    readonly_fields = [f.name for f in TestResult._meta.fields]
    show_full_result_count = False
    date_hierarchy = "started_at"

    def scope(self, rows: QuerySet[TestResult], user: Any) -> QuerySet[TestResult]:
        return without_hidden_targets(rows, user)

    @admin.display(description="scenario (history)", ordering="scenario")
    def scenario_history(self, obj: TestResult) -> str:
        url = reverse("admin:testing_testresult_changelist") + f"?scenario__exact={obj.scenario}"
        return format_html('<a href="{}">{}</a>', url, obj.scenario)


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

    def get_queryset(self, request: HttpRequest) -> QuerySet[BenchmarkRun]:
        return super().get_queryset(request).readable_by(request.user)

    def trends_view(self, request: HttpRequest) -> HttpResponse:
        known = machines()
        machine = request.GET.get("machine") or _this_machine(known)
        workload = sees_all_collections(request.user)  # its runs hold several teams' figures (readable_by)
        suites = [s for s in BenchmarkSuite.values if workload or s != BenchmarkSuite.WORKLOAD]
        suite = request.GET.get("suite") if request.GET.get("suite") in suites else BenchmarkSuite.QUICK
        return self.admin_page(
            request,
            "admin/testing/benchmarkrun/trends.html",
            "Benchmark trends",
            machines=known,
            suites=suites,
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
                compared = ["" if verdict.get(key) is None else format(verdict[key], spec) for key, spec in COMPARED]
                rows.append((benchmark, name, median, samples, *compared, verdict.get("verdict", ""), steps))
        header = ("benchmark", "figure", "median", "samples", "baseline", "change", "p (Welch)", "verdict", "steps")
        return format_html(
            "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<th>{}</th>", ((h,) for h in header)),
            format_html_join("", "<tr>" + "<td>{}</td>" * len(header) + "</tr>", rows),
        )


def _this_machine(known: list[str]) -> str:
    """The machine serving the page when it has runs, else the one that ran last (maybe on another host)."""
    from testing.benchmarks.suite import machine, machine_fingerprint

    here = machine_fingerprint(machine())
    return here if here in known or not known else known[0]
