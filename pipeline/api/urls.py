from __future__ import annotations

from rest_framework.routers import DefaultRouter

from pipeline.api.views import CollectionViewSet, DocumentViewSet

router = DefaultRouter()
router.register("collections", CollectionViewSet)
router.register("documents", DocumentViewSet)

urlpatterns = router.urls
