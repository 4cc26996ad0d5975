import hashlib

import factory

from annotation.models import Design, Image, Pair, Scene, Study


class StudyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Study

    slug = factory.Sequence(lambda n: f"study-{n}")
    title = factory.LazyAttribute(lambda o: o.slug)
    design = Design.PAIRWISE


class SceneFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Scene

    study = factory.SubFactory(StudyFactory)
    name = factory.Sequence(lambda n: f"scene-{n}")


class ImageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Image

    scene = factory.SubFactory(SceneFactory)
    name = factory.LazyAttributeSequence(lambda o, n: f"{o.scene.name}/img-{n}.png")
    role = Image.Role.TEST
    condition = "jpeg-q10"
    sha256 = factory.Sequence(lambda n: hashlib.sha256(str(n).encode()).hexdigest())
    file = factory.LazyAttribute(lambda o: f"images/{o.sha256[:2]}/{o.sha256[2:4]}/{o.sha256}.png")
    width = 48
    height = 32
    format = "PNG"
    size_bytes = 1000


class PairFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Pair

    scene = factory.SubFactory(SceneFactory)
    study = factory.LazyAttribute(lambda o: o.scene.study)
    image_a = factory.SubFactory(ImageFactory, scene=factory.SelfAttribute("..scene"))
    image_b = factory.SubFactory(ImageFactory, scene=factory.SelfAttribute("..scene"))
    target_votes = 3


class LiveStudyFactory(StudyFactory):
    """A study open to annotators, without practice, with a quota nobody reaches."""

    status = Study.Status.LIVE
    practice_trials = 0
    trials_per_session = 10_000


def make_pairs(study: Study, n_pairs: int, *, votes: int = 3, scenes: int = 1) -> list[Pair]:
    """``n_pairs`` pairs over ``scenes`` scenes, each pair of two fresh images."""
    pairs = []
    scene_objs = [SceneFactory(study=study) for _ in range(scenes)]
    for i in range(n_pairs):
        pairs.append(PairFactory(scene=scene_objs[i % scenes], target_votes=votes))
    return pairs


def make_gold_pair(study: Study, *, answer: str = "b") -> Pair:
    scene = SceneFactory(study=study)
    reference = ImageFactory(scene=scene, role=Image.Role.REFERENCE, condition="reference")
    decoy = ImageFactory(scene=scene, gold="worse", condition="gold-decoy")
    return PairFactory(scene=scene, image_a=decoy, image_b=reference, gold_answer=answer)
