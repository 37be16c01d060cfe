"""A collection's provider key variable is never one of the portal's own: its value would be sent, as
the key, to the API base whoever adds the collection chooses. Refused by the API, the admin, the domain
functions (the dimension probe first) and re-embed; a stored one is never read."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from pipeline.collections import create_collection
from pipeline.embedding import PipelineError, embed_raw
from pipeline.models import Collection
from tests.factories import admin_collection_form
from tests.tools import error_of

pytestmark = pytest.mark.django_db

REFUSED = "is a variable of the portal itself, never a provider key"
INSTEAD = "e.g. OPENAI_API_KEY (or OPENAI_API_KEY_FILE"
PORTAL_VARIABLES = [
    "DJANGO_SECRET_KEY",
    "DATABASE_URL",
    "DATABASE_URL_FILE",
    "EMBEDPORTAL_METRICS_TOKEN",
    "EMBEDPORTAL_METRICS_TOKEN_FILE",
    "PGPASSWORD",
]


@pytest.fixture
def member(db) -> User:
    """A team member (not a platform operator) who may add collections."""
    user = User.objects.create_user("mallory", password="x", is_staff=True)
    codenames = ["add_collection", "view_collection", "change_collection", "reembed_collection"]
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="pipeline", codename__in=codenames))
    user.groups.add(Group.objects.create(name="team-m"))
    return user


@pytest.fixture
def portal_secret(monkeypatch, request) -> str:
    """The portal variable named by the test's parameter, set in this process to a value to look for."""
    monkeypatch.setenv(request.param, "portal-secret-value")
    return request.param


@pytest.mark.parametrize("portal_secret", PORTAL_VARIABLES, indirect=True)
def test_the_api_refuses_a_portal_variable_as_the_key_before_any_call(member, fake_provider, portal_secret):
    api = APIClient()
    api.force_authenticate(member)
    body = {"name": "exfil", "model": "openai/x", "api_base": fake_provider.api_base, "api_key_env": portal_secret}
    details = error_of(api.post("/api/v1/collections/", body, format="json"), 400)["details"]
    assert REFUSED in details["api_key_env"][0] and INSTEAD in details["api_key_env"][0]
    assert fake_provider.requests == [] and not Collection.objects.exists()


@pytest.mark.parametrize("portal_secret", ["DJANGO_SECRET_KEY", "DATABASE_URL_FILE"], indirect=True)
def test_the_admin_form_refuses_a_portal_variable_as_the_key_before_any_call(
    client, member, fake_provider, portal_secret
):
    client.force_login(member)
    form = admin_collection_form(Group.objects.get().pk, fake_provider.api_base, portal_secret)
    response = client.post("/admin/pipeline/collection/add/", form)
    assert response.status_code == 200, "the form was accepted"
    assert REFUSED in response.content.decode()
    assert fake_provider.requests == [] and not Collection.objects.exists()


@pytest.mark.parametrize("portal_secret", ["DJANGO_SECRET_KEY"], indirect=True)
def test_create_collection_and_reembed_refuse_it_before_the_dimension_probe(
    member, fake_collection, fake_provider, portal_secret
):
    with pytest.raises(ValidationError) as raised:
        create_collection(name="exfil", model="openai/x", api_base=fake_provider.api_base, api_key_env=portal_secret)
    assert REFUSED in raised.value.message_dict["api_key_env"][0]

    fake_collection.team = Group.objects.get()
    fake_collection.save()
    api = APIClient()
    api.force_authenticate(member)
    body = {"model": "openai/other", "api_key_env": portal_secret}
    details = error_of(api.post("/api/v1/collections/fake/reembed/", body, format="json"), 400)["details"]
    assert REFUSED in str(details["api_key_env"])
    assert fake_provider.requests == []
    assert Collection.objects.get(name="fake").api_key_env == "FAKE_PROVIDER_KEY"


@pytest.mark.parametrize("portal_secret", ["DJANGO_SECRET_KEY"], indirect=True)
def test_a_stored_portal_variable_is_never_read_nor_sent(fake_collection, fake_provider, portal_secret):
    Collection.objects.update(api_key_env=portal_secret)  # saved before the rule held
    with pytest.raises(PipelineError) as raised:
        embed_raw(Collection.objects.get(), ["text"])
    assert raised.value.error_type == "auth" and "is a variable of the portal itself" in raised.value.message
    assert "not set" not in raised.value.message and fake_provider.requests == []


def test_an_ordinary_key_variable_and_the_settings_module_are_still_accepted(api, fake_provider, monkeypatch):
    monkeypatch.setenv("TEAM_M_OPENAI_KEY", "sk-team-key-123456")
    body = {"name": "fine", "model": "openai/x", "api_base": fake_provider.api_base, "api_key_env": "TEAM_M_OPENAI_KEY"}
    assert api.post("/api/v1/collections/", body, format="json").status_code == 201
    assert fake_provider.last_key == "sk-team-key-123456"
    assert (
        create_collection(
            name="ops", model="openai/x", api_base=fake_provider.api_base, api_key_env="DJANGO_SETTINGS_MODULE"
        ).dimensions
        == fake_provider.dims
    )


def test_a_collection_with_its_own_api_base_and_no_key_variable_never_sends_the_platforms_key(
    api, fake_provider, monkeypatch
):
    # LiteLLM falls back to OPENAI_API_KEY when no key is passed: the platform's key went to whatever
    # server the collection named. A keyless server (vLLM, TEI) now gets the usual placeholder.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-platform-key-123456")
    body = {"name": "keyless", "model": "openai/x", "api_base": fake_provider.api_base}
    assert api.post("/api/v1/collections/", body, format="json").status_code == 201
    embed_raw(Collection.objects.get(name="keyless"), ["text"])
    assert [r["auth"] for r in fake_provider.requests] == ["Bearer EMPTY", "Bearer EMPTY"]  # probe, then the call
