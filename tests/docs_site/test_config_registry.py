"""One settings registry: settings.py reads every variable through it and writes no defaults."""

from __future__ import annotations

import ast
from pathlib import Path

from docs_site.coverage import settings_read
from docs_site.generators.configuration import current_value
from embedportal import config, env

SETTINGS_PY = Path(__file__).resolve().parents[2] / "embedportal" / "settings.py"
HELPER_KINDS = {
    "env_str": {"str", "path"},
    "env_bool": {"bool"},
    "env_int": {"int"},
    "env_float": {"float"},
    "env_list": {"list"},
    "env_networks": {"list"},
    "env_secret": {"secret"},
}


def env_calls() -> list[ast.Call]:
    tree = ast.parse(SETTINGS_PY.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) in HELPER_KINDS]


def test_every_variable_settings_reads_is_registered() -> None:
    read = settings_read(SETTINGS_PY)
    assert len(read) > 30
    assert read - set(config.SETTINGS) == set()


def test_settings_py_reads_the_environment_only_through_the_helpers_and_passes_no_defaults() -> None:
    source = SETTINGS_PY.read_text()
    assert "os.environ" not in source and "os.getenv" not in source
    for call in env_calls():
        assert len(call.args) == 1 and not call.keywords, f"{ast.unparse(call)}: the default belongs in config.py"


def test_each_variable_is_read_with_the_helper_of_its_registered_type() -> None:
    for call in env_calls():
        name = call.args[0].value
        assert config.SETTINGS[name].kind in HELPER_KINDS[ast.unparse(call.func)], name


def test_defaults_come_from_the_registry(monkeypatch) -> None:
    monkeypatch.delenv("EMBEDPORTAL_CLAIM_BATCH", raising=False)
    assert env.env_int("EMBEDPORTAL_CLAIM_BATCH") == config.SETTINGS["EMBEDPORTAL_CLAIM_BATCH"].default
    monkeypatch.setenv("EMBEDPORTAL_CLAIM_BATCH", "7")
    assert env.env_int("EMBEDPORTAL_CLAIM_BATCH") == 7


def test_every_setting_has_a_description_and_secrets_are_flagged() -> None:
    for setting in config.SETTINGS.values():
        assert setting.description.strip(), setting.name
    assert {"DATABASE_URL", "DJANGO_SECRET_KEY", "EMBEDPORTAL_METRICS_BASIC_AUTH"} <= {
        s.name for s in config.SETTINGS.values() if s.secret
    }


def test_a_secret_is_shown_only_as_set_or_unset(monkeypatch, tmp_path: Path) -> None:
    secret = config.SETTINGS["EMBEDPORTAL_METRICS_BASIC_AUTH"]
    monkeypatch.delenv("EMBEDPORTAL_METRICS_BASIC_AUTH", raising=False)
    assert secret.secret and current_value(secret.name) == "unset"
    (tmp_path / "auth").write_text("user:pw")
    monkeypatch.setenv("EMBEDPORTAL_METRICS_BASIC_AUTH_FILE", str(tmp_path / "auth"))
    assert env.env_secret(secret.name) == "user:pw" and current_value(secret.name) == "set"
