"""What the pages show, built from selectors' results: plain dicts for templates and the
page's JSON config. Images are presented as the annotator API presents them."""

from annotation.models import Study
from annotation.presenters import image_size, image_url
from annotation.selectors import study_example_pair


def study_example(study: Study) -> dict | None:
    """A gold pair as the worked example, image A on the left."""
    pair = study_example_pair(study=study)
    if pair is None:
        return None
    slots = {"left": pair.image_a, "right": pair.image_b, "reference": pair.shown_reference}
    return {
        "images": {slot: image and image_url(image.file) for slot, image in slots.items()},
        "sizes": {slot: image_size(image) for slot, image in slots.items()},
        "answer": {"a": "left", "b": "right", "similar": "similar"}[pair.gold_answer],
    }
