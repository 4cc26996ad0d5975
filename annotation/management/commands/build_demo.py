"""``python manage.py build_demo``: the two demo studies, if they are absent."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from annotation.demo import DEMO_STUDIES, demo_build


class Command(BaseCommand):
    help = "Build the demo studies (ref-vs-test 'demo', pairwise 'demo-pairwise') if absent."

    def handle(self, *args: object, **options: object) -> None:
        # Owned by the laptop install's researcher account, when ensure_admin has made it.
        owner = get_user_model().objects.filter(username="admin").first()
        created = demo_build(owner=owner)
        for result in created:
            self.stdout.write(
                f"Created demo study {result.study.slug!r} ({result.study.design}): "
                f"{len(result.scenes)} scenes, {result.images} images, {result.pairs} pairs "
                f"(+ {result.gold_pairs} gold), live"
            )
        if not created:
            self.stdout.write(f"Demo studies already present: {', '.join(DEMO_STUDIES)}")
