"""Query filters of the pipeline's API (django-filter): one FilterSet per model, shared by
every view that lists it; unknown parameters and values are a 400 (StrictFilterSet)."""

from __future__ import annotations

import django_filters

from embedportal.api.strict import StrictFilterSet
from pipeline.choices import DocumentStatus
from pipeline.models import Document


class DocumentFilter(StrictFilterSet):
    collection = django_filters.CharFilter(field_name="collection__name", help_text="Collection name")
    status = django_filters.ChoiceFilter(choices=DocumentStatus.choices)

    class Meta:
        model = Document
        fields = ["collection", "status"]
