"""Per-collection access by team, applied in the admin and the commands; the rule itself is
pipeline.models.visible (the API calls it through collection_or_404 and its querysets)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser
from django.db.models import QuerySet
from django.http import Http404, HttpRequest

from pipeline.models import Collection, visible


class TeamCollectionFilter(admin.RelatedFieldListFilter):
    """The collection list filter offers only the collections the operator may see."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
        return field.get_choices(include_blank=False, limit_choices_to=visible(request.user), ordering=("name",))


class TeamScoped:
    """Admin mixin for rows under a collection (`collection_path`; "" for collections): only the user's
    teams' rows are listed or offered; another team's row answers 404, as an unknown one does."""

    collection_path = "collection"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self.scope(super().get_queryset(request), request.user)  # type: ignore[misc]

    def scope(self, rows: QuerySet, user: Any) -> QuerySet:
        return rows.filter(visible(user, self.collection_path))

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        found = super().get_object(request, object_id, from_field)  # type: ignore[misc]
        if found is None:
            raise Http404("no such row")
        return found

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.related_model is Collection:
            kwargs["queryset"] = Collection.objects.visible_to(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]


def _hidden(user: Any) -> QuerySet:
    return Collection.objects.exclude(pk__in=Collection.objects.visible_to(user).values("pk"))


def without_hidden_targets(rows: QuerySet, user: Any) -> QuerySet:
    """Rows naming a collection in `target` (operations test results): another team's are left out."""
    return rows.exclude(target__in=_hidden(user).values("name"))


def without_hidden_names(selection: dict, user: Any) -> dict:
    """A test run's selection with the collections it names, but another team's."""
    hidden = set(_hidden(user).filter(name__in=selection.get("collections", [])).values_list("name", flat=True))
    return {**selection, "collections": [n for n in selection.get("collections", []) if n not in hidden]}


def add_as_user(parser: CommandParser) -> None:
    parser.add_argument(
        "--as-user",
        metavar="USERNAME",
        help="Act for this user: only their teams' collections (default: as the platform operator, every one)",
    )


def collection_for(name: str, as_user: str | None, hint: str = "") -> Collection:
    """A command's collection among those `as_user` sees (without it, every one); another team's is unknown."""
    user = None
    if as_user:
        user = get_user_model().objects.filter(username=as_user, is_active=True).first()
        if user is None:
            raise CommandError(f"no active user named {as_user!r}")
    try:
        return Collection.objects.visible_to(user).get(name=name)
    except Collection.DoesNotExist:
        raise CommandError(f"no collection named {name!r}{hint}") from None
