"""Query filters of the pipeline's API (django-filter): one FilterSet per model, shared by
every view that lists it."""

from __future__ import annotations

import django_filters

from pipeline.choices import DocumentStatus
from pipeline.models import Document


class DocumentFilter(django_filters.FilterSet):
    collection = django_filters.CharFilter(field_name="collection__name", help_text="Collection name")
    status = django_filters.ChoiceFilter(choices=DocumentStatus.choices)

    class Meta:
        model = Document
        fields = ["collection", "status"]
