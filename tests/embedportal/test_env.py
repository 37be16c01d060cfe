"""Settings from the environment: a value of the wrong form stops the process at start naming the
variable and what it takes (it was a bare ValueError, or for a boolean a silent false, or for a CIDR
a 500 on every scrape of /metrics)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from embedportal.env import env_bool, env_float, env_hosts, env_int, env_key_hosts, env_key_teams, env_networks
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("helper", "name", "raw", "wanted"),
    [
        (env_int, "EMBEDPORTAL_CLAIM_BATCH", "abc", "a whole number, 1 or more"),
        (env_int, "EMBEDPORTAL_CLAIM_BATCH", "-5", "a whole number, 1 or more"),
        (env_int, "EMBEDPORTAL_CLAIM_BATCH", "1e3", "a whole number, 1 or more"),
        (env_int, "EMBEDPORTAL_CLAIM_BATCH", "0", "a whole number, 1 or more"),  # every worker would stall
        (env_int, "EMBEDPORTAL_OPS_TEST_MAX_BACKLOG", "-1", "a whole number, 0 or more"),
        (env_float, "EMBEDPORTAL_EMBED_TIMEOUT", "soon", "a number above 0"),
        (env_float, "EMBEDPORTAL_EMBED_TIMEOUT", "-1", "a number above 0"),
        (env_float, "EMBEDPORTAL_EMBED_TIMEOUT", "0", "a number above 0"),
        (env_float, "EMBEDPORTAL_EMBED_TIMEOUT", "inf", "a number above 0"),
        (env_float, "EMBEDPORTAL_EMBED_TIMEOUT", "nan", "a number above 0"),
        (env_float, "EMBEDPORTAL_RETRY_BASE_SECONDS", "-0.5", "a number, 0 or more"),
        (env_bool, "DJANGO_DEBUG", "maybe", "true or false"),
        (env_networks, "EMBEDPORTAL_METRICS_ALLOWED_IPS", "10.0.0.0/8,10.0.0.0/33", "CIDRs or addresses"),
        *(
            (env_key_hosts, "EMBEDPORTAL_PROVIDER_KEY_HOSTS", f"A_KEY=a.example,{entry}", "VARIABLE=host or ")
            for entry in ("GW_KEY=https://gw/v1", "GW_KEY", "GW_KEY=gw:99999", "GW_KEY=user@gw", "1KEY=gw", "GW_KEY=")
        ),
        *(
            (env_key_teams, "EMBEDPORTAL_PROVIDER_KEY_TEAMS", f"A_KEY=acme,{entry}", "VARIABLE=team")
            for entry in ("GW_KEY", "GW_KEY=", "GW_KEY= ", "1KEY=acme", "GW_KEY=a=b")
        ),
        *(
            (env_hosts, "EMBEDPORTAL_API_BASE_HOSTS", f"a.example,{entry}", "host or host:port")
            for entry in ("https://gw/v1", "gw:99999", "user@gw", "gw/v1")
        ),
    ],
)
def test_a_value_of_the_wrong_form_is_refused_naming_the_variable(monkeypatch, helper, name, raw, wanted):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ImproperlyConfigured, match=f"^{name}=.*: expected {wanted}"):
        helper(name)


def test_values_of_the_right_form_read_as_they_are_meant(monkeypatch):
    monkeypatch.setenv("EMBEDPORTAL_CLAIM_BATCH", " 12 ")
    assert env_int("EMBEDPORTAL_CLAIM_BATCH") == 12
    monkeypatch.setenv("EMBEDPORTAL_OPS_TEST_MAX_BACKLOG", "0")  # 0 means something there: no backlog
    assert env_int("EMBEDPORTAL_OPS_TEST_MAX_BACKLOG") == 0
    monkeypatch.setenv("EMBEDPORTAL_RETRY_BASE_SECONDS", "0")
    assert env_float("EMBEDPORTAL_RETRY_BASE_SECONDS") == 0
    monkeypatch.setenv("EMBEDPORTAL_EMBED_TIMEOUT", "2.5")
    assert env_float("EMBEDPORTAL_EMBED_TIMEOUT") == 2.5
    for raw, value in {"Yes": True, "on": True, "1": True, "false": False, "OFF": False, "0": False}.items():
        monkeypatch.setenv("DJANGO_DEBUG", raw)
        assert env_bool("DJANGO_DEBUG") is value
    monkeypatch.setenv("EMBEDPORTAL_METRICS_ALLOWED_IPS", "10.0.0.0/8, 192.168.1.7,::1")
    assert env_networks("EMBEDPORTAL_METRICS_ALLOWED_IPS") == ["10.0.0.0/8", "192.168.1.7", "::1"]
    monkeypatch.setenv("EMBEDPORTAL_PROVIDER_KEY_HOSTS", "AZURE_KEY=MyCo.openai.azure.com, GW_KEY=gw:8443,GW_KEY=[::1]")
    assert env_key_hosts("EMBEDPORTAL_PROVIDER_KEY_HOSTS") == {
        "AZURE_KEY": {("myco.openai.azure.com", None)},
        "GW_KEY": {("gw", 8443), ("::1", None)},
    }
    monkeypatch.setenv("EMBEDPORTAL_PROVIDER_KEY_TEAMS", "ACME_KEY=acme, ACME_KEY=Team Two,SHARED=acme")
    assert env_key_teams("EMBEDPORTAL_PROVIDER_KEY_TEAMS") == {"ACME_KEY": {"acme", "Team Two"}, "SHARED": {"acme"}}
    monkeypatch.setenv("EMBEDPORTAL_API_BASE_HOSTS", "LLM-GW.internal:8443, tei.internal,[::1]")
    assert env_hosts("EMBEDPORTAL_API_BASE_HOSTS") == {("llm-gw.internal", 8443), ("tei.internal", None), ("::1", None)}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"EMBEDPORTAL_TOKEN_EXPIRY_DAYS": "ninety"},
            "EMBEDPORTAL_TOKEN_EXPIRY_DAYS='ninety': expected a whole number, 1 or more",
        ),
        ({"Q_TIMEOUT": "600", "Q_RETRY": "300"}, "Q_RETRY must exceed Q_TIMEOUT"),
        (
            {"EMBEDPORTAL_PROVIDER_KEY_HOSTS": "GW_KEY=gw:8443,GW_KEY=https://gw/v1"},
            "EMBEDPORTAL_PROVIDER_KEY_HOSTS='GW_KEY=https://gw/v1': expected VARIABLE=host or VARIABLE=host:port",
        ),
    ],
)
def test_the_process_stops_at_start_with_the_variable_named(variables, message):
    env = {**os.environ, **variables}
    run = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert message in run.stderr
