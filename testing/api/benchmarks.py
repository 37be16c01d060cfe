"""GET /api/v1/embedding-pipeline-operations/benchmarks: benchmark runs, newest first, with their
figures and comparison (regressions flagged); ?regressed=true, ?suite=, ?machine=."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, viewsets

from embedportal.api.permissions import ModelPermissions
from testing.benchmarks import regression
from testing.models import BenchmarkRun


class BenchmarkRunSerializer(serializers.ModelSerializer):
    regressed = serializers.SerializerMethodField()

    class Meta:
        model = BenchmarkRun
        fields = "__all__"

    def get_regressed(self, run: BenchmarkRun) -> list[str]:
        """The figures flagged, as benchmark.figure."""
        return [f"{b}.{f}" for b, f in regression.regressions(run.comparison)]


class BenchmarkRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Benchmark runs (`manage.py benchmark`), newest first: each benchmark's figures as repeated samples and
    their comparison with earlier runs on the same machine; `regressed` names the figures flagged.
    Filters: ?regressed=true|false, ?suite=quick|full, ?machine=<fingerprint>."""

    queryset = BenchmarkRun.objects.all()
    serializer_class = BenchmarkRunSerializer
    permission_classes = [ModelPermissions]

    def get_queryset(self) -> Any:
        qs = super().get_queryset()
        params = self.request.query_params
        if params.get("regressed") in ("true", "1", "yes"):
            qs = qs.filter(regressions__gt=0)
        elif params.get("regressed") in ("false", "0", "no"):
            qs = qs.filter(regressions=0)
        fields = {"suite": "suite", "machine": "machine_fingerprint"}
        return qs.filter(**{field: params[name] for name, field in fields.items() if params.get(name)})
