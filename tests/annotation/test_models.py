"""Database constraints hold the invariants of studies, scenes, images and pairs."""

import pytest
from django.db import IntegrityError, transaction

from annotation.models import Image, Pair
from tests.factories import ImageFactory, PairFactory, SceneFactory, StudyFactory

pytestmark = pytest.mark.django_db


def assert_refused(make) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        make()


def test_a_scene_has_at_most_one_reference():
    scene = SceneFactory()
    ImageFactory(scene=scene, role=Image.Role.REFERENCE)
    assert_refused(lambda: ImageFactory(scene=scene, role=Image.Role.REFERENCE))
    ImageFactory(scene=scene, role=Image.Role.TEST)
    assert scene.images.count() == 2


def test_image_names_are_unique_within_a_scene_only():
    scene = SceneFactory()
    ImageFactory(scene=scene, name="s/a.png")
    assert_refused(lambda: ImageFactory(scene=scene, name="s/a.png"))
    ImageFactory(name="s/a.png")  # another scene


def test_scene_names_are_unique_within_a_study():
    study = StudyFactory()
    SceneFactory(study=study, name="x")
    assert_refused(lambda: SceneFactory(study=study, name="x"))


def test_a_pair_compares_two_different_images():
    image = ImageFactory()
    assert_refused(
        lambda: Pair.objects.create(
            study=image.scene.study, scene=image.scene, image_a=image, image_b=image, target_votes=3
        )
    )


def test_a_pair_exists_once_whichever_image_is_a():
    pair = PairFactory()
    assert_refused(
        lambda: Pair.objects.create(
            study=pair.study,
            scene=pair.scene,
            image_a=pair.image_b,
            image_b=pair.image_a,
            target_votes=3,
        )
    )


@pytest.mark.parametrize(
    "fields",
    [{"votes_per_pair": 0}, {"gold_rate": 1.0}, {"gold_rate": -0.1}, {"design": "pairs"}],
)
def test_study_settings_outside_their_domain_are_refused(fields):
    assert_refused(lambda: StudyFactory(**fields))


def test_image_content_address_is_a_sha256_hex_digest():
    assert_refused(lambda: ImageFactory(sha256="not-a-digest"))


def test_pair_target_votes_and_gold_answer_are_checked():
    assert_refused(lambda: PairFactory(target_votes=0))
    assert_refused(lambda: PairFactory(gold_answer="left"))
    assert PairFactory(gold_answer="a").is_gold
