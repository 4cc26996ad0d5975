"""The Celery application. Workers run ``python -m scoring.worker [OPTIONS]``: ``celery -A
config worker [OPTIONS]`` in the environment that points the metric libraries at the
weights folder, offline (``scoring.weights.worker_environment``)."""

import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _create_broker_folders(sender: Celery, **kwargs: object) -> None:
    # The file-system transport expects its folders to exist; create them before
    # the first publish or consume rather than at settings import.
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
