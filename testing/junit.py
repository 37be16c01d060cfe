"""A run as JUnit XML (xunit2), for Argo artifacts and CI tools (notes: docs/ops-tests.md, "Module notes")."""

from __future__ import annotations

from django.db.models import QuerySet
from junitparser import Error, Failure, Skipped
from junitparser.xunit2 import FlakyFailure, JUnitXml, TestCase, TestSuite

from embedportal.printable import printable
from testing.choices import Outcome
from testing.models import TestResult, TestRun


def run_to_junit(run: TestRun, results: QuerySet[TestResult] | None = None) -> JUnitXml:
    """`results`: which of the run's results to write (default: every one)."""
    xml = JUnitXml(name=f"embedding-pipeline-operations run {run.pk}")
    suites: dict[str, TestSuite] = {}
    for result in (run.results.all() if results is None else results.filter(run=run)).order_by("id"):
        suite = suites.get(result.category)
        if suite is None:
            suite = suites[result.category] = TestSuite(f"embedding_pipeline_operations.{result.category}")
            suite.timestamp = result.started_at.isoformat()
        name = f"{result.scenario}[{result.target}]" if result.target else result.scenario
        case = TestCase(name, classname=f"{result.category}.{result.component}", time=round(result.duration_seconds, 3))
        # Messages quote tenants' model strings and providers' errors: most control characters are not XML.
        message = printable(result.message, keep="\n\t")
        if result.outcome in (Outcome.FAILED, Outcome.ERROR):
            kind = Failure if result.outcome == Outcome.FAILED else Error
            case.result = [kind(message.splitlines()[0][:500] if message else result.outcome)]
            case.result[0].text = message
        elif result.outcome == Outcome.SKIPPED:
            case.result = [Skipped(message)]
        elif result.outcome == Outcome.FLAKY:
            for attempt in result.details.get("attempts", [])[:-1]:
                case.add_interim_result(FlakyFailure(printable(attempt.get("message", ""))[:500], "flaky"))
        suite.add_testcase(case)
    for suite in suites.values():
        suite.update_statistics()
        xml.add_testsuite(suite)
    xml.update_statistics()
    return xml
