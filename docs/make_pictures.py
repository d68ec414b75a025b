"""Every picture of the documentation, redrawn from real runs.

    python docs/make_pictures.py                       # all of them into docs/images/ (about 10 minutes on 2 cores)
    python docs/make_pictures.py --only headline       # one picture (--list names them all)
    python docs/make_pictures.py --epochs 1 --seeds 1 --dest /tmp/pictures   # a quick check of the script

Every run trains on the 5,000 bundled digits (dataset mnist-5k), 30 epochs, seed 1234; the
pictures over 5 seeds use seeds 1234 to 1238. The runs are written to a temporary folder that is
removed at the end (--keep DIR keeps them there instead); only the pictures are copied to --dest.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import mnist_clip as mc

IMAGES = Path(__file__).resolve().parent / "images"
SEED = 1234


class Job:
    """The settings every picture shares: where the runs go, and how long and how many seeds they train."""

    def __init__(self, work: Path, epochs: int, seeds: int, jobs: int):
        self.work, self.epochs, self.seeds, self.jobs = work, epochs, seeds, jobs

    def run(self, config, name: str, **overrides) -> mc.RunResult:
        """A run of a recipe (or the defaults, config None) with overrides, trained once per script."""
        folder = self.work / name
        if folder.is_dir():
            return mc.load_run(folder)
        return mc.train(config, out=self.work, name=name, progress="quiet", dataset="mnist-5k", seed=SEED,
                        epochs=self.epochs, **overrides)

    def plot(self, run: mc.RunResult, picture: str) -> Path:
        return run.path / "plots" / picture


def reference(job: Job) -> mc.RunResult:
    """`mnist-clip train` with every default: pixels / 50, clipped by global norm at 15."""
    return job.run(None, "x50-clip15")


def headline(job: Job) -> Path:
    """The reference, the same without clipping, and both with pixels / 255 instead of / 50."""
    runs = [reference(job), job.run(None, "x50-noclip", clip="none"),
            job.run(None, "x255-clip15", input_scale=255), job.run(None, "x255-noclip", input_scale=255, clip="none")]
    mc.compare(runs, out=job.work / "compare-clip-and-scale")
    return job.work / "compare-clip-and-scale" / "compare.png"


def deep(job: Job, recipe: str) -> mc.RunResult:
    return job.run(recipe, recipe)


def compare_deep(job: Job) -> Path:
    runs = [deep(job, recipe) for recipe in ("deep_sigmoid", "deep_relu", "deep_relu_he", "deep_tanh_glorot")]
    mc.compare(runs, out=job.work / "compare-deep")
    return job.work / "compare-deep" / "compare.png"


def flow_rnn_explode(job: Job) -> Path:
    """The unclipped twin of `mnist-clip demo --config rnn_explode_clipped`, seed 1234."""
    return job.plot(job.run("rnn_explode_clipped", "rnn-explode-unclipped", clip="none"), "flow.png")


def compare_rnn_explode(job: Job) -> Path:
    """`mnist-clip demo --config rnn_explode_clipped --seeds 5`: the twins over seeds 1234 to 1238."""
    result = mc.demo("rnn_explode_clipped", out=job.work, name="rnn-demo", seeds=job.seeds, plots=False,
                     progress="quiet", dataset="mnist-5k", seed=SEED, epochs=job.epochs)
    return result.path / "compare.png"


def stability_map(job: Job) -> Path:
    """`mnist-clip sweep --seeds 5`: the default grid, 32 cells, 160 runs."""
    result = mc.sweep(out=job.work, name="sweep", seeds=job.seeds, jobs=job.jobs, progress="quiet",
                      dataset="mnist-5k", seed=SEED, epochs=job.epochs)
    return result.path / "stability.png"


def cures_of(recipe: str) -> Callable[[Job], Path]:
    def draw(job: Job) -> Path:
        result = mc.cures(recipe, seeds=job.seeds, out=job.work, name=f"cures-{recipe}", jobs=job.jobs,
                          progress="quiet", dataset="mnist-5k", seed=SEED, epochs=job.epochs)
        return result.path / "cures.png"
    draw.__doc__ = f"`mnist-clip cures --config {recipe} --seeds 5`: every cure that applies, beside the setup."
    return draw


def own_cnn(job: Job) -> Path:
    """`python examples/own_model.py`: a small Keras CNN watched by a GradientProbe (3 epochs, seed 1234)."""
    folder = job.work / "own-model"
    if not (folder / "cnn").is_dir():
        subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "examples" / "own_model.py"),
                        "--out", str(folder), "--epochs", str(min(job.epochs, 3))], check=True)
    return folder / "cnn" / "plots" / "norms.png"


# picture file in docs/images/ -> how it is made
PICTURES: dict[str, Callable[[Job], Path]] = {
    "compare_clip_and_scale.png": headline,
    **{f"{picture}_reference.png": (lambda job, picture=picture: job.plot(reference(job), f"{picture}.png"))
       for picture in ("norms", "ratio", "loss", "signals", "flow", "updates")},
    "flow_deep_sigmoid.png": lambda job: job.plot(deep(job, "deep_sigmoid"), "flow.png"),
    "flow_deep_sigmoid_batchnorm.png": lambda job: job.plot(deep(job, "deep_sigmoid_batchnorm"), "flow.png"),
    "compare_deep.png": compare_deep,
    "stability_map.png": stability_map,
    "flow_rnn_explode.png": flow_rnn_explode,
    "compare_rnn_explode.png": compare_rnn_explode,
    "cell_lstm_vanish.png": lambda job: job.plot(job.run("lstm_vanish", "lstm-vanish"), "cell.png"),
    "cures_explode.png": cures_of("explode"),
    "cures_deep_sigmoid.png": cures_of("deep_sigmoid"),
    "norms_own_cnn.png": own_cnn,
}
GROUPS = {"headline": ["compare_clip_and_scale.png"],
          "reference": [picture for picture in PICTURES if picture.endswith("_reference.png")]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[],
                        help="a picture's file name (with or without .png), 'headline' or 'reference' "
                             "(its six); repeatable")
    parser.add_argument("--list", action="store_true", help="name every picture and stop")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per run (30 for the documentation's)")
    parser.add_argument("--seeds", type=int, default=5,
                        help="seeds of the sweep and the cures (5 for the documentation's)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of the sweep and the cures")
    parser.add_argument("--dest", type=Path, default=IMAGES, help="where the pictures go (docs/images/)")
    parser.add_argument("--keep", type=Path, help="write the runs into this folder and keep them")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(PICTURES))
        return 0
    wanted = [picture for name in args.only
              for picture in GROUPS.get(name, [name if name.endswith(".png") else f"{name}.png"])]
    unknown = [name for name in wanted if name not in PICTURES]
    if unknown:
        parser.error(f"no picture {', '.join(unknown)}; --list names them")
    work = args.keep or Path(tempfile.mkdtemp(prefix="mnist-clip-pictures-"))
    work.mkdir(parents=True, exist_ok=True)
    args.dest.mkdir(parents=True, exist_ok=True)
    job = Job(work, args.epochs, args.seeds, args.jobs)
    try:
        for picture, make in PICTURES.items():
            if wanted and picture not in wanted:
                continue
            started = time.monotonic()
            drawn = make(job)
            shutil.copyfile(drawn, args.dest / picture)
            print(f"{args.dest / picture}  ({time.monotonic() - started:.0f} s)", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
