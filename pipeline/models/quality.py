"""Retrieval quality: each collection's golden queries and the history of their evaluations."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from embedportal.printable import unsafe_character
from pipeline.choices import SearchMode
from pipeline.models.collection import Collection

# The figures an evaluation stores, in the order commands and the admin show them.
METRICS = ("recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10", "ndcg_at_10")


class GoldenQuery(models.Model):
    """An operator's statement of retrieval quality: this query must find this document
    (pipeline.quality scores search with them; the operations tester's regression scenario too)."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="golden_queries")
    query = models.CharField(max_length=2000)
    expected_document_id = models.CharField(
        max_length=512,
        help_text="The external id of the document the query must find.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["collection", "id"]
        verbose_name_plural = "golden queries"
        # The import's upsert key: one row per question.
        constraints = [
            models.UniqueConstraint(fields=["collection", "query"], name="pipeline_goldenquery_unique_query")
        ]

    def __str__(self) -> str:
        return f"{self.query[:60]} -> {self.expected_document_id}"

    def clean(self) -> None:
        if found := golden_query_problems(vars(self)):
            raise ValidationError(found)


class RetrievalEvaluation(models.Model):
    """One run of a collection's golden queries through search: document-level figures."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="evaluations")
    evaluated_at = models.DateTimeField(default=timezone.now)
    mode = models.CharField(max_length=10, choices=SearchMode.choices)
    queries = models.PositiveIntegerField()
    recall_at_1 = models.FloatField()
    recall_at_5 = models.FloatField()
    recall_at_10 = models.FloatField()
    mrr_at_10 = models.FloatField("MRR@10")
    ndcg_at_10 = models.FloatField("nDCG@10")
    configuration = models.JSONField(default=dict, help_text="The collection's retrieval settings at the time.")
    trigger = models.CharField(
        max_length=20,
        default="command",
        help_text="command, api, schedule; or, around a configuration change, before change, settings change "
        "(search settings saved), optimizer (its ef_search change) or re-embed (its new generation switched to).",
    )
    before = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="An evaluation after a configuration change: the evaluation before it, to compare with.",
    )

    class Meta:
        ordering = ["-evaluated_at"]
        indexes = [
            # The quality gauge and the SLO read each collection's latest evaluation.
            models.Index(fields=["collection", "-evaluated_at"], name="pipeline_evaluation_latest")
        ]

    def __str__(self) -> str:
        return f"{self.collection_id} {self.mode} @ {self.evaluated_at:%Y-%m-%d %H:%M}"

    def figures(self) -> dict[str, float]:
        return {m: getattr(self, m) for m in METRICS}


def golden_query_problems(values: dict[str, str]) -> dict[str, str]:
    """A golden query's text and expected id among `values`, refused as a document's id is
    (pipeline.queue.validate): lists, messages and JUnit files show both. GoldenQuery.clean for the admin,
    the API serializer for its body."""
    return {
        f: found for f in ("query", "expected_document_id") if f in values and (found := unsafe_character(values[f]))
    }
