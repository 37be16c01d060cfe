from __future__ import annotations

from rest_framework import serializers

from docs_site.models import DocCoverage, DocPage


class DocPageSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="The page on the site served under /docs/.")

    class Meta:
        model = DocPage
        fields = [
            "path",
            "title",
            "kind",
            "status",
            "reason",
            "last_updated",
            "source_changed_at",
            "lag_seconds",
            "review_due_at",
            "checked_at",
            "url",
        ]

    def get_url(self, page: DocPage) -> str:
        stem = page.path.removesuffix(".md")
        stem = "" if stem == "index" else stem.removesuffix("/index") + "/"
        return f"/docs/{stem}"


class DocCoverageSerializer(serializers.ModelSerializer):
    ratio = serializers.FloatField(read_only=True)

    class Meta:
        model = DocCoverage
        fields = ["kind", "documented", "existing", "ratio", "missing", "checked_at"]


class DocsSerializer(serializers.Serializer):
    site_url = serializers.CharField()
    checked_at = serializers.DateTimeField(allow_null=True)
    coverage = DocCoverageSerializer(many=True)
    pages = DocPageSerializer(many=True)
