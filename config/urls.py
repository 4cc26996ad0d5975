from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from config.health import healthz
from config.media import media_file

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/", include("annotation.urls")),
    path("api/v1/", include("workspace.api_urls")),
    path("", include("workspace.urls")),
    path("", include("frontend.urls")),
]

if settings.IQA_SERVE_MEDIA:
    prefix = settings.MEDIA_URL.lstrip("/")
    urlpatterns.append(re_path(rf"^{prefix}(?P<path>images/.+)$", media_file, name="media"))
