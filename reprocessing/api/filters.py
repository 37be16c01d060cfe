"""Query filters of the failure list (django-filter); ages are seconds since the first failure."""

from __future__ import annotations

from datetime import timedelta

import django_filters
from django.db.models import QuerySet
from django.utils import timezone

from embedportal.api.strict import StrictFilterSet
from pipeline.api.filters import collection_filter
from reprocessing.models import FailedDocument


def _failed_ago(qs: QuerySet, name: str, seconds: float) -> QuerySet:
    """min_age: first failed at least `seconds` ago; max_age: at most."""
    lookup = "lte" if name == "min_age" else "gte"
    return qs.filter(**{f"first_failed_at__{lookup}": timezone.now() - timedelta(seconds=float(seconds))})


# A hundred years in seconds: any failure there is. Beyond about 2000 years, now - age is before year 1
# (OverflowError, a 500).
MAX_AGE_SECONDS = 3_155_760_000


def _age_filter(bound: str) -> django_filters.NumberFilter:
    help_text = f"Failed {bound} this many seconds ago (at most a hundred years)"
    return django_filters.NumberFilter(method=_failed_ago, min_value=0, max_value=MAX_AGE_SECONDS, help_text=help_text)


class FailedDocumentFilter(StrictFilterSet):
    # error_type, state and stage get django-filter's ChoiceFilter from the model fields' choices.
    collection = collection_filter("document__collection")
    min_age = _age_filter("at least")
    max_age = _age_filter("at most")

    class Meta:
        model = FailedDocument
        fields = ["error_type", "state", "stage", "collection", "min_age", "max_age"]
