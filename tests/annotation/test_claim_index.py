"""The claim walks the index of the pairs below their target (``pair_claimable_order``):
PostgreSQL uses a partial index only while the query's condition implies its predicate,
so a rewrite of the claim that loses ``n_assigned < target_votes`` would quietly walk
every pair again (issue 26: most pairs of an actively sampled study are at their target).
"""

import json
import random
from datetime import UTC, datetime
from itertools import combinations

import pytest
from django.db import connection, transaction

from annotation.models import Pair
from annotation.services.assignment import NEXT_TRIAL
from tests.factories import ImageFactory, LiveStudyFactory, SceneFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def mostly_at_target():
    """1,770 pairs of one study, all but 70 at their target, with fresh statistics."""
    study = LiveStudyFactory(sampling="active")
    scene = SceneFactory(study=study)
    images = [ImageFactory(scene=scene) for _ in range(60)]
    rng = random.Random(5)
    Pair.objects.bulk_create(
        Pair(study=study, scene=scene, image_a=a, image_b=b, target_votes=2,
             n_assigned=0 if k < 70 else 2, rand_key=rng.random())
        for k, (a, b) in enumerate(combinations(images, 2))
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_pair")
    return study


def plan_of(sql: str, params) -> str:
    """The plan PostgreSQL chooses (EXPLAIN, nothing run), with sequential scans off: on a
    table this small a scan would win, and the question is which index the claim can use."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        return json.dumps(cursor.fetchone()[0])


def test_the_one_statement_claim_walks_the_claimable_pairs_index(mostly_at_target):
    params = {"token": "any", "now": datetime.now(UTC), "gold_draw": 0.5}
    plan = plan_of(NEXT_TRIAL.sql, params)
    assert "pair_claimable_order" in plan, plan
