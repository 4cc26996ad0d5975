from django.conf import settings
from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from config.health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    # Browsers ask for it on every page: the platform's icon, not a 404.
    path("favicon.ico", RedirectView.as_view(url=static("workspace/favicon.svg"), permanent=True)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/", include("annotation.urls")),
    path("api/v1/", include("workspace.api_urls")),
    path("", include("workspace.urls")),
    path("", include("frontend.urls")),
]

# A path no route matches answers the API's error body under /api/ (config.api.not_found).
handler404 = "config.api.not_found"

if settings.IQA_SERVE_MEDIA:
    # The image store, under the access rule of the researcher side (annotation.media).
    urlpatterns.append(path("", include("annotation.media_urls")))
