from __future__ import annotations

from rest_framework.routers import SimpleRouter

from reprocessing.api.views import FailedDocumentViewSet

# SimpleRouter: the API root view belongs to pipeline.api's DefaultRouter at the same prefix.
router = SimpleRouter()
router.register("failures", FailedDocumentViewSet, basename="failure")

urlpatterns = router.urls
