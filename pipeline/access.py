"""Per-collection access by team, applied in the admin and the commands; the rule itself is
pipeline.models.visible (the API calls it through collection_or_404 and its querysets)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404, HttpRequest

from pipeline.models import Collection, sees_all_collections, visible


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


# A collection's name is free again once it is deleted: a test result or run naming `x` from before
# today's `x` was created was about another collection, maybe another team's. So a team member sees a
# name only as one of their collections that existed then; results of deleted collections are the platform's.


def without_hidden_targets(rows: QuerySet, user: Any) -> QuerySet:
    """Rows naming a collection in `target` (operations test results): for a team member, only those about
    no collection or about one of their collections recorded since it was created."""
    if sees_all_collections(user):
        return rows
    since = Collection.objects.visible_to(user).filter(name=OuterRef("target"), created_at__lte=OuterRef("started_at"))
    return rows.filter(Q(target="") | Exists(since))


def without_hidden_names(selection: dict, user: Any, at: datetime | None = None) -> dict:
    """A test run's selection with only the collections it names that `user` may see: for a team member,
    their collections created by `at` (when the run ended; None while it is queued or running)."""
    names = selection.get("collections", [])
    if not sees_all_collections(user):
        own = Collection.objects.visible_to(user).filter(name__in=names)
        kept = set((own if at is None else own.filter(created_at__lte=at)).values_list("name", flat=True))
        names = [n for n in names if n in kept]
    return {**selection, "collections": names}


def names_hidden(selection: dict, user: Any, at: datetime | None = None) -> bool:
    """The run's selection names a collection `user` may not see: they read the run without it, but it is
    not theirs to change (cancel)."""
    return without_hidden_names(selection, user, at)["collections"] != selection.get("collections", [])


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
