from __future__ import annotations

from rest_framework import serializers

from docs_site.models import DocCoverage, DocPage


class DocPageSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="The page on the site served under /docs/.")

    class Meta:
        model = DocPage
        # Every field the checks store but the row id and the recorded inputs hash, in model order.
        fields = [f.name for f in DocPage._meta.fields if f.name not in ("id", "inputs_hash")] + ["url"]

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


class DocsPageSerializer(serializers.ModelSerializer):
    """One page (`?page=`) as JSON: its Markdown as served (a generated page generated afresh)."""

    markdown = serializers.CharField()

    class Meta:
        model = DocPage
        fields = ["path", "title", "kind", "markdown"]
