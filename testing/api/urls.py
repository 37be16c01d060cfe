from __future__ import annotations

from rest_framework.routers import SimpleRouter

from testing.api.views import BenchmarkRunViewSet, GoldenQueryViewSet, TestRunViewSet

router = SimpleRouter()
# The endpoints answer with and without the trailing slash (the constructor only takes a bool).
router.trailing_slash = "/?"
router.register("embedding-pipeline-operations/test", TestRunViewSet, basename="ops-test")
router.register("embedding-pipeline-operations/golden-queries", GoldenQueryViewSet, basename="golden-query")
router.register("embedding-pipeline-operations/benchmarks", BenchmarkRunViewSet, basename="benchmark-run")

urlpatterns = router.urls
