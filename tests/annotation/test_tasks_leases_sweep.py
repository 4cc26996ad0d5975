"""The lease sweep's Celery task, as beat runs it (the task body, called directly)."""

from datetime import timedelta

import pytest
from django.conf import settings

from annotation import services, tasks
from annotation.models import Pair, Trial
from tests.annotation.sessions import open_session
from tests.factories import LiveStudyFactory, make_pairs

pytestmark = pytest.mark.django_db


def test_the_beat_task_sweeps_expired_leases(clock):
    """Beat runs annotation.leases_sweep; it returns the expired lease's pair to the pool."""
    schedule = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert tasks.leases_sweep.name in schedule
    study = LiveStudyFactory(lease_seconds=60)
    (pair,) = make_pairs(study, 1, votes=1)
    held = services.trial_next(token=open_session(study))
    assert tasks.leases_sweep() == 0  # the lease is live
    clock.advance(timedelta(seconds=61))
    assert tasks.leases_sweep() == 1
    assert tasks.leases_sweep() == 0
    assert Trial.objects.get(pk=held.trial_id).released
    assert Pair.objects.get(pk=pair.pk).n_assigned == 0
