"""Browsing a study's data: its scenes, a scene's images and pairs, a pair with its votes
and both images in the annotators' own viewer. Any role that sees the study may browse
it (``analysis.browse`` builds the tables)."""

import json
import math

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from analysis.browse import SORTS, PairTable, metric_columns, pair_table, pairs_sorted
from analysis.models import AgreementSnapshot
from analysis.snapshot_selectors import agreement_scene_images, agreement_snapshot_head
from annotation.models import Image, Pair, Scene, Vote
from annotation.presenters import image_size, image_url
from workspace.access import login_required, study_for_page

PAGE_SIZE = 50
ANSWER_TEXT = {"a": "A", "similar": "similar", "b": "B", "none": "no majority"}


def _verdict(value: float) -> str | None:
    """A metric's verdict on a pair from its outcome for A: 1 A, 0 B, else a tie."""
    return None if math.isnan(value) else {1.0: "A", 0.0: "B"}.get(value, "tie")


def _number(value, digits: int = 3):
    """A float for a template: None for NaN (shown as a dash)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else round(value, digits)


def _human_scale(study, scene: str) -> dict[str, dict]:
    """Each compared image's human scale in the scene (Thurstone, with its votes), as the
    study's latest agreement report computed it; empty before the first report."""
    snapshot = agreement_snapshot_head(study=study, variant=AgreementSnapshot.Variant.COUNTED)
    block = agreement_scene_images(snapshot=snapshot, scene=scene) if snapshot else None
    if block is None:
        return {}
    return {row["image"]: row for row in json.loads(block.images_json)}


def _pairs_listing(request: HttpRequest, study, table: PairTable, scene: str | None = None):
    """The pairs list of the data and scene pages: the query's sort and metric, the
    sorted pairs (of ``scene``, if given) and the page of them shown."""
    controls = _controls(request, table)
    pairs = pairs_sorted(
        table, sort=controls["sort"], metric=controls["metric"] or None, scene=scene
    )
    page = _page(request, pairs)
    shown = pairs.iloc[page.object_list.start : page.object_list.stop]
    return controls, {
        "rows": _pair_rows(study.slug, shown),
        "page": page,
        "n_pairs": len(pairs),
        **controls,
    }


def _controls(request: HttpRequest, table: PairTable) -> dict:
    """The list's sort and metric from the query, checked against what exists."""
    metrics = table.metrics
    metric = request.GET.get("metric") or (metrics[0] if metrics else "")
    if metric not in metrics:
        metric = metrics[0] if metrics else ""
    sort = request.GET.get("sort", "scene")
    if sort not in SORTS or (sort == "miss" and not metric):
        sort = "scene"
    return {"metrics": metrics, "metric": metric, "sort": sort}


def _pair_rows(slug: str, pairs) -> list[dict]:
    rows = []
    for pair in pairs.itertuples(index=False):
        verdict = getattr(pair, "verdict", math.nan)
        rows.append(
            {
                "url": reverse("workspace:pair-detail", args=[slug, pair.pair_id]),
                "pair_id": pair.pair_id,
                "scene": pair.scene,
                "name_a": pair.name_a,
                "name_b": pair.name_b,
                "condition_a": pair.condition_a,
                "condition_b": pair.condition_b,
                "n_a": pair.n_a,
                "n_similar": pair.n_similar,
                "n_b": pair.n_b,
                "n_votes": pair.n_votes,
                "p_a": _number(pair.p_a, 2),
                "majority": ANSWER_TEXT[pair.majority],
                "disagreement": _number(pair.disagreement, 2),
                "score_a": _number(getattr(pair, "score_a", math.nan), 4),
                "score_b": _number(getattr(pair, "score_b", math.nan), 4),
                "verdict": _verdict(verdict),
                "miss": _number(getattr(pair, "miss", math.nan), 2),
            }
        )
    return rows


def _page(request: HttpRequest, pairs):
    return Paginator(range(len(pairs)), PAGE_SIZE).get_page(request.GET.get("page"))


@login_required
def study_data(request: HttpRequest, slug: str) -> HttpResponse:
    """The study's scenes, then its pairs, sortable by how far people disagree and by how
    far a metric is from them."""
    study = study_for_page(request, slug)
    table = pair_table(study=study)
    controls, listing = _pairs_listing(request, study, table)
    scenes = []
    if not table.pairs.empty:
        per_scene = metric_columns(table, table.pairs, controls["metric"]).groupby("scene")
        summary = per_scene.agg(
            pairs=("pair_id", "size"),
            votes=("n_votes", "sum"),
            labelled=("majority", lambda m: int((m != "none").sum())),
            disagreement=("disagreement", "mean"),
            miss=("miss", "mean"),
        )
    ids = dict(Scene.objects.filter(study=study).values_list("name", "pk"))
    images = table.images.groupby("scene").size()
    for name in sorted(ids):
        row = summary.loc[name] if not table.pairs.empty and name in summary.index else None
        scenes.append(
            {
                "name": name,
                "url": reverse("workspace:scene-detail", args=[slug, ids[name]]),
                "images": int(images.get(name, 0)),
                "pairs": int(row["pairs"]) if row is not None else 0,
                "votes": int(row["votes"]) if row is not None else 0,
                "labelled": int(row["labelled"]) if row is not None else 0,
                "disagreement": _number(row["disagreement"], 2) if row is not None else None,
                "miss": _number(row["miss"], 2) if row is not None else None,
            }
        )
    context = {"nav": "studies", "study": study, "scenes": scenes, **listing}
    return render(request, "workspace/study_data.html", context)


@login_required
def scene_detail(request: HttpRequest, slug: str, scene_id: int) -> HttpResponse:
    """A scene's images (thumbnails, role, condition, size, the metric's score) and its
    pairs, sortable as the study's."""
    study = study_for_page(request, slug)
    scene = Scene.objects.filter(study=study, pk=scene_id).first()
    if scene is None:
        raise Http404(f"no scene {scene_id} in study {slug}")
    table = pair_table(study=study)
    controls, listing = _pairs_listing(request, study, table, scene=scene.name)
    metric = controls["metric"]
    values = table.scores[metric] if metric in table.scores.columns else None
    scale = _human_scale(study, scene.name)
    images = []
    for image in Image.objects.filter(scene=scene).order_by("role", "name"):
        score = None if values is None else _number(values.get(image.pk, math.nan), 4)
        human = scale.get(image.name, {})
        images.append(
            {
                "name": image.name,
                "url": image_url(image),
                "role": image.get_role_display(),
                "condition": image.condition,
                "width": image.width,
                "height": image.height,
                "format": image.format,
                "gold": image.get_gold_display() if image.gold else "",
                "score": score,
                "thurstone": _number(human.get("thurstone"), 2),
                "scale_votes": human.get("n_votes"),
            }
        )
    context = {"nav": "studies", "study": study, "scene": scene, "images": images, **listing}
    return render(request, "workspace/scene_detail.html", context)


@login_required
def pair_detail(request: HttpRequest, slug: str, pair_id: int) -> HttpResponse:
    """A pair: both images (and the reference shown with them) in the annotators' viewer
    at native pixels, with zoom and flicker; its votes, label and every metric's verdict."""
    study = study_for_page(request, slug)
    pair = (
        Pair.objects.filter(study=study, pk=pair_id)
        .select_related("scene", "image_a", "image_b", "shown_reference")
        .first()
    )
    if pair is None:
        raise Http404(f"no pair {pair_id} in study {slug}")
    table = pair_table(study=study)
    row = table.pairs[table.pairs["pair_id"] == pair.pk]
    metrics = []
    for metric in table.metrics:
        rows = _pair_rows(slug, metric_columns(table, row, metric))
        if rows:
            metrics.append({"metric": metric, **rows[0]})
    slots = {"left": pair.image_a, "right": pair.image_b, "reference": pair.shown_reference}
    viewer = {
        "images": {key: image_url(image) for key, image in slots.items() if image},
        "sizes": {key: image_size(image) for key, image in slots.items() if image},
        "labels": {"left": "A", "right": "B", "reference": "Reference"},
    }
    votes = (
        Vote.objects.filter(pair=pair)
        .select_related("session", "trial")
        .order_by("created_at")
        .values(
            "created_at", "kind", "choice", "preferred", "late", "too_fast", "pilot",
            "server_ms", "response_ms", "session__pseudonym", "trial__a_on_left",
        )
    )  # fmt: skip
    context = {
        "nav": "studies",
        "study": study,
        "pair": pair,
        "summary": _pair_rows(slug, row)[0] if not row.empty else None,
        "metrics": metrics,
        "viewer": viewer,
        "votes": [
            {
                **vote,
                "shown_left": "A" if vote["trial__a_on_left"] else "B",
                "preferred": ANSWER_TEXT[vote["preferred"]],
            }
            for vote in votes
        ],
        "scene_url": reverse("workspace:scene-detail", args=[slug, pair.scene_id]),
    }
    return render(request, "workspace/pair_detail.html", context)
