"""Query filters of the pipeline's API (django-filter): one FilterSet per model, shared by
every view that lists it; unknown parameters and values are a 400 (StrictFilterSet)."""

from __future__ import annotations

import django_filters

from embedportal.api.strict import StrictFilterSet
from pipeline.choices import DocumentStatus
from pipeline.models import Collection, Document


def collection_filter(field_name: str) -> django_filters.ModelChoiceFilter:
    """`?collection=<name>` of a collection the caller sees; any other name is a 400 naming it (a typo
    answered an empty list), the same for a collection that does not exist and one of another team."""
    return django_filters.ModelChoiceFilter(
        field_name=field_name,
        to_field_name="name",
        queryset=lambda request: Collection.objects.visible_to(request.user),
        error_messages={"invalid_choice": "no collection named '%(value)s'"},
        help_text="Collection name",
    )


class DocumentFilter(StrictFilterSet):
    collection = collection_filter("collection")
    status = django_filters.ChoiceFilter(choices=DocumentStatus.choices)

    class Meta:
        model = Document
        fields = ["collection", "status"]
