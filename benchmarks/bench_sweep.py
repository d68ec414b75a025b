"""What a sweep cell costs: compiled afresh for every cell (how sweeps ran before) against a
compiled program shared by every cell of a worker (how they run now), and the FLOP floor.

    python benchmarks/bench_sweep.py [--cells 8] [--epochs 30] [--full]

Both variants train the same cells of the default grid (lr x clip_norm x input_scale, in grid
order) one after the other in this process, with XLA's persistent cache off, so that "fresh"
really compiles every cell; they alternate cell by cell, so the machine's drift hits both.
The table gives cells per minute and their ratio. The floor is the FLOP limit: every step's
3 x 2 x batch x weights FLOP at the measured throughput of a 2048x2048 matmul on both cores.
--full also times the whole default sweep with 5 seeds (160 cells) through the command, with
--jobs 2, in a temporary folder (about 3 minutes).

--floor N instead measures a 16-cell sweep (lr x clip_norm, --jobs 2) through the command
against its floor, N times alternating with a single `train --no-plots`: the floor is one
run's fixed cost (its wall time minus its training) plus the training of the cells each
worker runs (the cells' train_seconds over the workers). Prints the medians and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

USER_CACHE = os.environ.get("MNIST_CLIP_XLA_CACHE")  # the floor is measured as a user runs
os.environ["MNIST_CLIP_XLA_CACHE"] = "off"  # "fresh" must compile; set before TensorFlow loads
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mnist_clip.console.tf_setup import import_tensorflow  # noqa: E402

tf = import_tensorflow()

from mnist_clip.training import step as training  # noqa: E402
from mnist_clip.config import Config, layer_sizes  # noqa: E402
from mnist_clip.data import load_dataset  # noqa: E402
from mnist_clip.experiment import run_experiment  # noqa: E402
from mnist_clip.plans.grid import DEFAULT_GRID, make_cells, parse_grid  # noqa: E402
from bench_train import matmul_throughput  # noqa: E402  (this folder is on the path when run as a script)


def train_cell(config: Config, dataset, folder: Path, fresh: bool) -> float:
    """Seconds to train one cell into `folder` as a sweep worker does (no pictures)."""
    if fresh:  # what every cell paid before programs were shared: trace and compile again
        training._PROGRAMS.clear()
        training._EVALUATORS.clear()
    started = time.perf_counter()
    folder.mkdir()
    run_experiment(config, dataset, folder, draw_plots=False)
    return time.perf_counter() - started


FLOOR_GRID = ("lr=0.01,0.03,0.1,0.3", "clip_norm=none,1,5,15")


def command_seconds(args: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mnist_clip", *args], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def sweep_against_floor(repeats: int, jobs: int = 2) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "MNIST_CLIP_XLA_CACHE"}
    if USER_CACHE is not None:
        env["MNIST_CLIP_XLA_CACHE"] = USER_CACHE
    grid = [arg for spec in FLOOR_GRID for arg in ("--grid", spec)]
    sweeps, floors, fixed = [], [], []
    with tempfile.TemporaryDirectory() as out:
        command_seconds(["train", "--no-plots", "--quiet", "--out", out, "--name", "warm"], env)
        for i in range(repeats):
            for what in ("train", "sweep") if i % 2 == 0 else ("sweep", "train"):
                if what == "train":
                    wall = command_seconds(["train", "--no-plots", "--quiet", "--out", out, "--name", f"t{i}"], env)
                    trained = json.loads((Path(out) / f"t{i}" / "summary.json").read_text())["train_seconds"]
                    fixed.append(wall - trained)
                else:
                    sweeps.append(command_seconds(["sweep", *grid, "--jobs", str(jobs), "--quiet", "--out", out,
                                                   "--name", f"s{i}"], env))
                    cells = list((Path(out) / f"s{i}" / "cells").iterdir())
                    floors.append(sum(json.loads((cell / "summary.json").read_text())["train_seconds"]
                                      for cell in cells) / jobs)
    floor = statistics.median(fixed) + statistics.median(floors)
    sweep = statistics.median(sweeps)
    print(f"16-cell sweep, --jobs {jobs}: median {sweep:.2f} s ({' '.join(f'{v:.1f}' for v in sweeps)})")
    print(f"floor: one run's fixed cost {statistics.median(fixed):.2f} s + the cells' training per worker "
          f"{statistics.median(floors):.2f} s = {floor:.2f} s")
    print(f"ratio: {sweep / floor:.2f}x the floor")
    return {"sweep_seconds": sweeps, "fixed_seconds": fixed, "training_per_worker": floors, "ratio": sweep / floor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=8, help="cells of the default grid per variant")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--full", action="store_true", help="also time the 160-cell sweep (default grid x 5 seeds)")
    parser.add_argument("--json", default="benchmarks/results/bench_sweep.json")
    parser.add_argument("--floor", type=int, default=0, metavar="N", help="the 16-cell sweep against its floor, N times")
    args = parser.parse_args()
    if args.floor:
        sweep_against_floor(args.floor)
        return

    base = Config(dataset="mnist-5k", epochs=args.epochs)
    dataset = load_dataset("mnist-5k")
    cells = make_cells(base, parse_grid(DEFAULT_GRID))[: args.cells]
    seconds = {"fresh": [], "shared": []}
    with tempfile.TemporaryDirectory() as out:
        train_cell(cells[0].config, dataset, Path(out) / "warm-up", fresh=True)  # TensorFlow's own first-use costs
        for index, cell in enumerate(cells):
            for variant in ("fresh", "shared") if index % 2 == 0 else ("shared", "fresh"):
                seconds[variant].append(train_cell(cell.config, dataset, Path(out) / f"{variant}-{index}",
                                                   fresh=variant == "fresh"))
    per_minute = {variant: 60 * len(times) / sum(times) for variant, times in seconds.items()}
    steps = base.epochs * base.steps_per_epoch(len(dataset.y_train))
    sizes = layer_sizes()
    flop_per_step = 3 * 2 * base.batch_size * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    gflops = matmul_throughput() / 1e9
    floor_seconds = steps * flop_per_step / (gflops * 1e9)
    print(f"{len(cells)} cells of {steps} steps each, one after the other in one process:")
    print(f"  compiled afresh per cell (before): {per_minute['fresh']:6.1f} cells/min  "
          f"(median {statistics.median(seconds['fresh']):.2f} s per cell)")
    print(f"  compiled program shared (now):     {per_minute['shared']:6.1f} cells/min  "
          f"(median {statistics.median(seconds['shared']):.2f} s per cell)")
    print(f"  ratio now / before: {per_minute['shared'] / per_minute['fresh']:.2f}")
    print(f"  FLOP floor: {floor_seconds:.2f} s per cell ({60 / floor_seconds:.0f} cells/min) at {gflops:.0f} GFLOP/s; "
          f"160 cells: {160 * floor_seconds:.0f} s")
    report = {"cells": len(cells), "steps_per_cell": steps, "seconds": seconds, "cells_per_minute": per_minute,
              "ratio": per_minute["shared"] / per_minute["fresh"], "matmul_gflops": gflops,
              "floor_seconds_per_cell": floor_seconds, "floor_seconds_160_cells": 160 * floor_seconds}
    if args.full:
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "mnist_clip", "sweep", "--dataset", "mnist-5k", "--seeds", "5",
                            "--jobs", "2", "--out", out, "--name", "s", "--quiet"], check=True,
                           env={**os.environ, "MNIST_CLIP_XLA_CACHE": ""})
            report["full_sweep_seconds"] = time.perf_counter() - started
        print(f"  the default sweep x 5 seeds (160 cells, --jobs 2): {report['full_sweep_seconds']:.0f} s")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
