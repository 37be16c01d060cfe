from __future__ import annotations

from rest_framework.routers import SimpleRouter

from audit.api.views import AuditEventViewSet

# SimpleRouter: the API root view belongs to pipeline.api's DefaultRouter at the same prefix.
router = SimpleRouter()
router.register("audit", AuditEventViewSet, basename="audit")

urlpatterns = router.urls
