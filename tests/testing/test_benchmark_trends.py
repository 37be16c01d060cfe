"""The admin's Benchmark trends page: each figure's history on one machine, with the runs the gate
flagged and the change points asv.step_detect dates, behind the view permission."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from testing.benchmarks import suite
from tests.factories import NOISE, STEP_AT, benchmark_run, step_history

URL = "/admin/testing/benchmarkrun/trends/"


def chart(trends: dict, benchmark: str, figure: str) -> dict:
    [found] = [c for c in trends["charts"] if (c["benchmark"], c["figure"]) == (benchmark, figure)]
    return found


@pytest.mark.django_db
def test_trends_mark_the_regressed_run_and_date_the_step_at_its_first_run(admin_client):
    runs = step_history()
    benchmark_run(
        timezone.now(), "elsewhere", {"search": {"p95_ms": suite.figure([99.0, 99.0], "lower", "ms")}}, "other"
    )
    benchmark_run(timezone.now(), "full", {"search": {"p95_ms": suite.figure([1.0, 1.0], "lower", "ms")}}, "m", "full")

    response = admin_client.get(URL, {"machine": "m", "suite": "quick"})

    assert response.status_code == 200
    trends = response.context["trends"]
    assert [r["id"] for r in trends["runs"]] == [r.pk for r in runs]  # this machine and suite, oldest first
    search = chart(trends, "search", "p95_ms")
    assert search["better"] == "lower" and search["unit"] == "ms"
    # The gate flagged the first run of the slower level when it was stored (and the next, whose
    # baseline still held the old level); nothing before the step.
    assert search["regressions"] == [STEP_AT, STEP_AT + 1]
    [step] = search["change_points"]
    assert step["run"] == STEP_AT and step["code_version"] == "commit-8"
    assert step["at"] == runs[STEP_AT].started_at.isoformat()
    assert step["change"] == pytest.approx(0.3, abs=0.02)
    # The noise band is each run's range of samples around its median.
    assert search["low"][0] == pytest.approx(9.9) and search["high"][0] == pytest.approx(10.1)
    assert search["median"][STEP_AT] == pytest.approx(13.0 + NOISE[STEP_AT] / 2)
    flat = chart(trends, "ingest_steady", "docs_per_second")
    assert flat["regressions"] == [] and flat["change_points"] == []
    # The page carries the same series to the chart script, and names the step.
    page = response.content.decode()
    assert json.loads(page.split('id="benchmark-trends" type="application/json">')[1].split("</script>")[0]) == trends
    assert f"Change 30% from the run of {runs[STEP_AT].started_at:%Y-%m-%dT%H:%M} UTC (commit-8)." in page


@pytest.mark.django_db
def test_trends_default_to_the_machine_that_ran_last_when_this_one_has_none(admin_client):
    step_history("m")
    benchmark_run(timezone.now(), "later", {"search": {"p95_ms": suite.figure([5.0, 5.0], "lower", "ms")}}, "newer")

    trends = admin_client.get(URL).context["trends"]

    assert trends["machine"] == "newer" and trends["suite"] == "quick" and len(trends["runs"]) == 1
    assert admin_client.get(URL, {"machine": "none-such"}).context["trends"]["charts"] == []


@pytest.mark.django_db
def test_trends_need_login_and_the_view_permission(client):
    step_history()

    anonymous = client.get(URL)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")

    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403

    staff.user_permissions.add(Permission.objects.get(codename="view_benchmarkrun"))
    staff = User.objects.get(pk=staff.pk)  # a fresh permission cache
    client.force_login(staff)
    assert client.get(URL, {"machine": "m"}).status_code == 200


@pytest.mark.django_db
def test_benchmark_run_list_links_to_the_trends(admin_client):
    page = admin_client.get("/admin/testing/benchmarkrun/").content.decode()
    assert f'href="{URL}"' in page
