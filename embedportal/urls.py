from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import IsAuthenticated

from embedportal.views import prometheus_metrics
from pipeline import views as ops

# API paths answer the JSON error body even for errors outside DRF views (503 if the database is down).
handler500 = "embedportal.api.errors.server_error"
handler404 = "embedportal.api.errors.not_found"
handler400 = "embedportal.api.errors.bad_request"

urlpatterns = [
    # The admin is the operator console: the bare host name leads there (and to its login).
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/v1/", include("pipeline.api.urls")),
    path("api/v1/", include("reprocessing.api.urls")),
    path("api/v1/", include("docs_site.api.urls")),
    path("api/v1/", include("testing.api.urls")),
    path("api/v1/", include("audit.api.urls")),
    path("api/v1/schema/", SpectacularAPIView.as_view(permission_classes=[IsAuthenticated]), name="schema"),
    path(
        "api/v1/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[IsAuthenticated]),
        name="swagger-ui",
    ),
    # Our own /metrics: django-prometheus's view drops the database collectors in multiprocess mode.
    path("metrics", prometheus_metrics, name="metrics"),
    # The built documentation site (manage.py docs build), for signed-in staff.
    path("docs/", include("docs_site.urls")),
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
]
