"""/metrics is closed beyond this machine by default: loopback scrapes, anything else needs a
listed network or a credential (the ServiceMonitor's bearer token)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_by_default_only_loopback_reads_metrics(client):
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    # A forged forwarding header does not make a remote client local.
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 403


def test_a_bearer_token_admits_any_address_and_is_then_required_on_loopback_too(client, settings):
    settings.EMBEDPORTAL_METRICS_TOKEN = "scrape-token-1"
    ok = client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer scrape-token-1")
    assert ok.status_code == 200 and b"embedding_pipeline_queue_depth" in ok.content
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": "Basic c2NyYXBlLXRva2VuLTE="}):
        refused = client.get("/metrics", REMOTE_ADDR="127.0.0.1", **headers)
        assert refused.status_code == 401 and refused["WWW-Authenticate"] == 'Bearer realm="metrics"'


def test_a_listed_network_replaces_the_loopback_default(client, settings):
    settings.EMBEDPORTAL_METRICS_ALLOWED_IPS = ["0.0.0.0/0", "::/0"]  # the documented way to open it
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200
    settings.EMBEDPORTAL_METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
