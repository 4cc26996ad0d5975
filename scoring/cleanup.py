"""Scoring's writes that the web process makes (a study's deletion): nothing here imports
the metric libraries, unlike ``scoring.services``."""

from django.db import connection

from annotation.models import Image, Study
from scoring.models import Score


def study_scores_delete(*, study: Study) -> int:
    """Delete every score of the study's images (as the image scored or as its reference)
    in one statement, ahead of the study's deletion: the ORM's cascade would load each
    row first. Returns how many went."""
    images = Image.objects.filter(scene__study=study).values("pk")
    sql, params = images.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {Score._meta.db_table} WHERE image_id IN ({sql}) "
            f"OR reference_id IN ({sql})",
            [*params, *params],
        )
        return cursor.rowcount
