"""The dashboard's scoring panel says which metrics lack weight files here and the exact
command that fetches them, from the catalog and the weights folder alone."""

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client

from tests.factories import LiveStudyFactory
from tests.scoring.test_weights import LPIPS_FILES
from workspace import dashboard

pytestmark = pytest.mark.django_db


def test_lacking_metrics_and_the_commands_that_fetch_them(settings, tmp_path):
    settings.IQA_WEIGHTS_DIR = tmp_path
    overview = dashboard.weights_overview(study_metrics=["lpips", "psnr"])
    assert "lpips" in overview["lacking"]
    assert "psnr" not in overview["lacking"]  # needs no file
    assert overview["total"] == 101
    assert overview["study"] == ["lpips"]
    assert overview["study_command"] == "python manage.py install_weights --fetch lpips"
    assert overview["recommended_command"] == (
        "python manage.py install_weights --fetch recommended"
    )
    for file in LPIPS_FILES:
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file).write_bytes(b"w")
    cache.clear()  # the folder's state is cached for a minute
    overview = dashboard.weights_overview(study_metrics=["lpips", "psnr"])
    assert "lpips" not in overview["lacking"]
    assert overview["study"] == []
    assert overview["study_command"] == ""


def test_the_dashboard_shows_the_fetch_command(settings, tmp_path):
    settings.IQA_WEIGHTS_DIR = tmp_path
    owner = get_user_model().objects.create_user("owner", password="pw")
    study = LiveStudyFactory(owner=owner)
    client = Client()
    client.force_login(owner)
    page = client.get(f"/studies/{study.slug}/").content.decode()
    assert f"metrics lack weight files in <code>{tmp_path}</code>" in page
    assert (
        '<code class="command">python manage.py install_weights --fetch recommended</code>' in page
    )
    assert '<code class="command">python manage.py install_weights --fetch all</code>' in page
