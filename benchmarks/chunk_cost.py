"""Where (c)'s time goes against (f)'s: one program call of n steps costs a + b n; this fits the
call's fixed cost a and the per-step cost b for mnist-clip's compiled chunk and for the JAX loop.

    python benchmarks/chunk_cost.py [--case reference] [--repeats 15] [--lengths 1 31]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mnist_clip.console.tf_setup import import_tensorflow  # noqa: E402

tf = import_tensorflow()

import numpy as np  # noqa: E402

from bench_train import CASES  # noqa: E402
from jax_loop import JaxTrainer  # noqa: E402
from mnist_clip.config import Config  # noqa: E402
from mnist_clip.data import load_dataset  # noqa: E402
from mnist_clip.training.step import Trainer  # noqa: E402

LENGTHS = (1, 4, 16, 31)


def callers(config: Config, dataset, lengths=LENGTHS) -> dict:
    """name -> {n: a function that runs one program call of n steps and brings its values to the host}."""
    trainer = Trainer(config, dataset)
    xb, yb = trainer.epoch_chunk(0)  # the epoch's full batches first
    jax_trainer = JaxTrainer(config, dataset)
    jxb, jyb = jax_trainer.batches[0]

    def tf_call(n):
        x, y = xb[:n], yb[:n]

        def call():
            values, steps_run, stopped = trainer.run_chunk(x, y)
            values.numpy(), int(steps_run), bool(stopped)
        return call

    def jax_call(n):
        x, y = jxb[:n], jyb[:n]

        def call():
            t = jax_trainer
            t.params, t.stopped, rows, steps_run = t.program(t.params, t.lr, t.clip_norm, t.stopped, x, y)
            np.asarray(rows), int(steps_run)
        return call

    return {"c": {n: tf_call(n) for n in lengths}, "f": {n: jax_call(n) for n in lengths}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=list(CASES), default="reference")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS), help="steps per call")
    args = parser.parse_args()
    dataset = load_dataset("mnist-5k", None)
    config = Config().replace(**CASES[args.case][0])
    lengths = args.lengths
    calls = callers(config, dataset, lengths)
    for variant in calls.values():
        for call in variant.values():
            call(), call()  # compile, warm
    seconds = {(v, n): [] for v in calls for n in lengths}
    for _ in range(args.repeats):
        for v, variant in calls.items():
            for n, call in variant.items():
                started = time.perf_counter()
                call()
                seconds[(v, n)].append(time.perf_counter() - started)
    print(f"{args.case}: load {os.getloadavg()[0]:.2f}; ms per call (best of {args.repeats})")
    for v in calls:
        best = [1000 * min(seconds[(v, n)]) for n in lengths]
        slope, intercept = np.polyfit(lengths, best, 1)
        print(f"  ({v}) " + "  ".join(f"n={n}: {ms:7.3f}" for n, ms in zip(lengths, best))
              + f"   -> call {intercept:.3f} ms + {slope:.3f} ms/step")


if __name__ == "__main__":
    main()
