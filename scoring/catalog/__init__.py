"""Maintenance of the weights catalog (``scoring/weights_catalog.json``): the probe that
finds which files each pyiqa metric loads. Used by ``manage.py metrics_catalog`` only;
the worker and the web process never import it (it patches the metric libraries while
it probes)."""
