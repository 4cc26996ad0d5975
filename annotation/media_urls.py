"""The image store's URL (name "media"), mounted by config/urls.py when the web process
serves it (IQA_SERVE_MEDIA)."""

from django.conf import settings
from django.urls import re_path

from annotation.media import media_file

urlpatterns = [
    re_path(rf"^{settings.MEDIA_URL.lstrip('/')}(?P<path>images/.+)$", media_file, name="media"),
]
