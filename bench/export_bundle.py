"""The bundle and the vote import at scale: time and peak memory of each, as real processes.

The synthetic study of ``bench/agreement_speed.py`` (1,000,000 votes on 100,000 pairs:
1,818 scenes of 11 images and one of 5, 10 votes per pair from 5,000 simulated
annotators, each pair's ten distinct) is written to PostgreSQL: its images and pairs with
the ORM, its votes as a 1,000,000-row long CSV through ``manage.py import_votes`` (timed:
the import benchmark). Then ``manage.py export_study --bundle`` of that study (timed: the
bundle benchmark). Each command runs as its own process; its wall time and peak resident
memory (``ru_maxrss`` of the finished child) are printed.

Needs PostgreSQL on 127.0.0.1; drops and recreates the scratch database
``iqa_bench_export`` (``--database``).

    .venv/bin/python bench/export_bundle.py [--scenes 1818] [--votes-per-pair 10]
        [--samples 1000]
    .venv/bin/python bench/export_bundle.py --smoke   # seconds: what the suite runs

``--votes-per-pair 1`` gives the same pairs with 100,000 votes: memory that grows with
the votes shows as the difference between the two runs.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def database_url(name: str) -> str:
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def run(args: list[str], env: dict) -> tuple[float, float, str]:
    """Run ``manage.py *args`` as a child; its wall seconds, peak RSS in MiB and output.

    Children run one at a time and each finished child raises ``RUSAGE_CHILDREN``'s
    maximum only if it used more, so every command is started from a fresh launcher
    process whose own children are just that command."""
    launcher = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "sys.stdout.write(done.stdout + done.stderr)\n"
        "print(f'@@ {wall:.3f} {rss:.1f} {done.returncode}')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", launcher, sys.executable, "manage.py", *args],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    *output, last = done.stdout.rstrip().splitlines()
    _, wall, rss, code = last.split()
    if code != "0":
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n" + "\n".join(output))
    return float(wall), float(rss), "\n".join(output)


def prepare(name: str, scenes: int, votes_per_pair: int, csv_path: Path) -> dict:
    """A fresh database with the synthetic study's images and pairs; its votes as a long
    CSV at ``csv_path``. Returns the environment of the commands."""
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)
    env = {**os.environ, "DATABASE_URL": database_url(name)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
    code = f"""
import sys
sys.path.insert(0, "bench")
from agreement_speed import synthetic_study
from annotation.models import Image, Pair, Scene, Study
data, _ = synthetic_study(scenes={scenes}, metrics=1, votes_per_pair={votes_per_pair},
                          annotators=5000, seed=0)
study = Study.objects.create(slug="synthetic", design="pairwise", votes_per_pair={votes_per_pair},
    status="closed")
scenes = {{name: Scene.objects.create(study=study, name=name)
          for name in sorted(set(data.images["scene"]))}}
images = Image.objects.bulk_create([
    Image(scene=scenes[row.scene], name=row.name, role="test", condition=row.condition,
          sha256=f"{{row.image_id:064x}}", file=f"images/00/00/{{row.image_id}}.png", width=64,
          height=48, format="PNG", size_bytes=1)
    for row in data.images.itertuples()], batch_size=5000)
Pair.objects.bulk_create([
    Pair(study=study, scene=scenes[row.scene], image_a=images[row.image_a],
         image_b=images[row.image_b], target_votes={votes_per_pair})
    for row in data.pairs.itertuples()], batch_size=5000)
names = data.images["name"].to_numpy()
# One vote per annotator and pair, as the import requires: distinct annotators per pair.
slot = (data.votes["pair_id"].to_numpy() * {votes_per_pair}
        + data.votes.groupby("pair_id").cumcount().to_numpy())
data.votes["annotator"] = ["u" + str(n) for n in slot % 5000]
votes = data.votes.merge(data.pairs[["pair_id", "scene", "image_a", "image_b"]], on="pair_id")
votes["image_a"] = names[votes["image_a"].to_numpy()]
votes["image_b"] = names[votes["image_b"].to_numpy()]
votes[["scene", "image_a", "image_b", "annotator", "preferred", "response_ms"]].to_csv(
    "{csv_path}", index=False)
print(len(votes), "votes,", len(data.pairs), "pairs,", len(data.images), "images")
"""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    print("study:", done.stdout.strip())
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=1818, help="scenes of 11 images")
    parser.add_argument("--votes-per-pair", type=int, default=10, help="votes on each pair")
    parser.add_argument("--samples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--database", default="iqa_bench_export")
    parser.add_argument("--smoke", action="store_true", help="10 scenes, 2 votes a pair")
    args = parser.parse_args()
    if args.smoke:
        args.scenes, args.votes_per_pair, args.samples = 10, 2, 20
    with tempfile.TemporaryDirectory() as scratch:
        csv_path = Path(scratch) / "votes.csv"
        env = prepare(args.database, args.scenes, args.votes_per_pair, csv_path)
        with open(csv_path) as handle:
            rows = sum(1 for _ in handle) - 1
        wall, rss, out = run(
            ["import_votes", "synthetic", str(csv_path), "--format", "long-csv"], env
        )
        print(out.strip())
        print(f"import_votes long-csv  {rows:>9} rows  {wall:7.1f} s  peak RSS {rss:6.0f} MiB")
        bundle = Path(scratch) / "synthetic.zip"
        wall, rss, out = run(
            ["export_study", "synthetic", "--bundle", str(bundle), "--samples",
             str(args.samples)], env,
        )  # fmt: skip
        with zipfile.ZipFile(bundle) as archive:
            members = len(archive.namelist())
        size = bundle.stat().st_size / 2**20
        print(
            f"export_study --bundle  {rows:>9} votes {wall:7.1f} s  peak RSS {rss:6.0f} MiB"
            f"  ({members} files, {size:.0f} MiB zip)"
        )


if __name__ == "__main__":
    main()
