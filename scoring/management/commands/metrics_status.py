"""``python manage.py metrics_status``: every metric, FR/NR, ready or what it lacks."""

from django.core.management.base import BaseCommand, CommandParser

from scoring import services, weights
from scoring.registry import registry


class Command(BaseCommand):
    help = "List every metric: FR/NR, lower/higher better, ready or the exact files missing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--missing", action="store_true", help="unavailable metrics only")

    def handle(self, *args: object, **options: object) -> None:
        folder = weights.weights_dir()
        self.stdout.write(f"weights folder: {folder} (IQA_WEIGHTS_DIR)")
        ready = 0
        specs = sorted(registry().values(), key=lambda s: (s.kind, s.name))
        for spec in specs:
            state = services.metric_availability(spec)
            ready += state.available
            if options["missing"] and state.available:
                continue
            direction = "lower better" if spec.lower_better else "higher better"
            source = "" if spec.source == "pyiqa" else f" [plug-in {spec.source}]"
            status = "ready" if state.available else "UNAVAILABLE"
            self.stdout.write(f"{spec.name:24} {spec.kind}  {direction:13} {status}{source}")
            for name in state.missing:
                if name.startswith(weights.HF_PREFIX):
                    hf = folder / "huggingface" / "hub"
                    repo, filename = weights.hf_parts(name)
                    what = f"file {repo}/{filename}" if filename else f"repository {repo}"
                    self.stdout.write(
                        f"    missing Hugging Face {what}  ->  put a Hugging Face cache "
                        f"holding it in {hf}/"
                    )
                    continue
                path = folder / name
                self.stdout.write(f"    missing {path.name}  ->  put it in {path.parent}/")
            if state.reason and not state.missing:
                self.stdout.write(f"    {state.reason}")
        self.stdout.write(f"{ready} of {len(specs)} metrics ready")
