"""What the pages show, built from selectors' results: plain dicts for templates and the
page's JSON config. Images are presented as the annotator API presents them."""

from annotation.models import Study
from annotation.presenters import image_size, image_url
from annotation.selectors import study_example_pair


def study_example(study: Study) -> dict | None:
    """The worked example (a pair made for it, never a trial): the degraded image on the
    left, so the answer shown is "right"."""
    pair = study_example_pair(study=study)
    if pair is None:
        return None
    slots = {"left": pair.worse, "right": pair.better, "reference": pair.reference}
    return {
        "images": {slot: image and image_url(image) for slot, image in slots.items()},
        "sizes": {slot: image_size(image) for slot, image in slots.items()},
        "answer": "right",
    }
