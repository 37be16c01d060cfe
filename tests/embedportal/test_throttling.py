"""API throttles per user/token and kind of request, bad tokens per address, and the admin login
lockout: 429 with Retry-After, nothing accepted lost, a locked account refused its right password."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from pipeline.models import Collection, Document
from tests.tools import api_token, token_client, user_with

RATES = {"read": "1000/min", "write": "1000/min", "operate": "1000/min", "bad_token": "1000/min"}


@pytest.fixture(autouse=True)
def _empty_throttle_counts(django_db_blocker):
    # Outside the test's transaction: a live-server test commits its counts.
    with django_db_blocker.unblock():
        cache.clear()
    yield
    with django_db_blocker.unblock():
        cache.clear()


def test_the_counts_live_in_the_database_cache_table_migrate_created(db):
    cache.set("probe", 1)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM embedportal_cache WHERE cache_key LIKE %s", ["%probe"])
        assert cur.fetchone()[0] == 1


def test_a_write_burst_loses_nothing_it_accepted_and_every_429_says_when_to_retry(
    live_server, hash_collection, settings
):
    settings.EMBEDPORTAL_THROTTLE_RATES = {**RATES, "write": "10/min"}
    key = api_token(User.objects.create_superuser("burst", password="x"))
    url = f"{live_server.url}/api/v1/collections/{hash_collection.name}/documents/"

    def post(n: int) -> tuple[int, list[str], str | None]:
        body = json.dumps([{"id": f"r{n}-d{i}", "text": f"request {n} document {i}"} for i in range(5)]).encode()
        request = urllib.request.Request(
            url, data=body, headers={"Authorization": f"Token {key}", "Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (the test's server)
                return response.status, json.loads(response.read())["created"], None
        except urllib.error.HTTPError as exc:
            return exc.code, [], exc.headers.get("Retry-After")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(40)))
    accepted = [a for a in answers if a[0] == 202]
    throttled = [a for a in answers if a[0] == 429]
    print(
        f"\nburst of 40 enqueue requests (5 documents each, 8 threads, write rate 10/min): "
        f"{len(accepted)} answered 202, {len(throttled)} answered 429 "
        f"(Retry-After {sorted({int(a[2]) for a in throttled})} s), "
        f"{Document.objects.count()} documents stored"
    )
    assert len(accepted) + len(throttled) == 40
    assert len(accepted) == 10  # the advisory lock serialises the count: no overshoot
    assert all(a[2] is not None and int(a[2]) > 0 for a in throttled)
    stored = set(Document.objects.values_list("external_id", flat=True))
    assert stored == {doc for a in accepted for doc in a[1]}
    assert len(stored) == 5 * len(accepted)


@pytest.mark.django_db
def test_the_kind_of_request_is_the_kind_of_permission_it_needs(hash_collection, settings):
    settings.EMBEDPORTAL_THROTTLE_RATES = {**RATES, "read": "2/min", "operate": "1/min"}
    client = token_client(User.objects.create_superuser("kinds", password="x"))
    base = f"/api/v1/collections/{hash_collection.name}"
    assert client.get(f"{base}/").status_code == 200
    assert client.post(f"{base}/search/", {"query": "a", "k": 1}, format="json").status_code == 200  # a read
    refused = client.get(f"{base}/documents/")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert refused.json()["error"]["status"] == 429
    # Writes and operations keep their own counts.
    assert client.post(f"{base}/documents/", {"id": "w", "text": "a write"}, format="json").status_code == 202
    assert client.post(f"{base}/pause/").status_code == 200
    assert client.post(f"{base}/resume/").status_code == 429
    assert Collection.objects.get().paused


def test_each_user_has_its_own_count(hash_collection, settings):
    settings.EMBEDPORTAL_THROTTLE_RATES = {**RATES, "read": "1/min"}
    first, second = (token_client(user_with("view_collection")) for _ in range(2))
    assert first.get("/api/v1/collections/").status_code == 200
    assert first.get("/api/v1/collections/").status_code == 429
    assert second.get("/api/v1/collections/").status_code == 200


def test_bad_tokens_from_one_address_are_refused_with_429_even_a_good_one_then(hash_collection, settings):
    settings.EMBEDPORTAL_THROTTLE_RATES = {**RATES, "bad_token": "5/min"}
    answers = []
    for n in range(12):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token bad{n:036d}")
        answers.append(client.get("/api/v1/collections/"))
    statuses = [a.status_code for a in answers]
    print(f"\n12 bad tokens from one address (bad_token rate 5/min): {statuses}")
    assert statuses == [401] * 5 + [429] * 7
    assert all(int(a["Retry-After"]) > 0 for a in answers[5:])
    good = token_client(User.objects.create_superuser("good", password="x"))
    assert good.get("/api/v1/collections/").status_code == 429
    cache.clear()  # the window passed
    assert good.get("/api/v1/collections/").status_code == 200


def login(client, password: str):
    return client.post("/admin/login/?next=/admin/", {"username": "ops", "password": password})


@pytest.mark.django_db
def test_admin_login_locks_out_after_the_failure_limit_until_reset(client, settings):
    settings.AXES_FAILURE_LIMIT = 5
    User.objects.create_superuser("ops", password="correct horse battery")
    statuses = [login(client, f"wrong-{n}").status_code for n in range(7)]
    locked = login(client, "correct horse battery")
    print(f"\n7 wrong admin passwords then the right one (limit 5): {statuses} then {locked.status_code}")
    assert statuses[:4] == [200] * 4  # the form again, with its error
    assert set(statuses[4:]) == {429}
    assert locked.status_code == 429 and "_auth_user_id" not in client.session
    assert AccessAttempt.objects.get(username="ops").failures_since_start >= 5

    call_command("axes_reset_username", "ops")
    signed_in = login(client, "correct horse battery")
    assert signed_in.status_code == 302 and "_auth_user_id" in client.session


@pytest.mark.django_db
def test_a_success_before_the_limit_resets_the_count(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    User.objects.create_superuser("ops", password="correct horse battery")
    for _ in range(2):
        login(client, "wrong")
    assert login(client, "correct horse battery").status_code == 302
    client.logout()
    for _ in range(2):
        login(client, "wrong")
    assert login(client, "correct horse battery").status_code == 302
