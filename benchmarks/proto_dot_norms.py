"""Prototype: (c) with every L2 norm of the step taken as a matmul (sqrt(g_flat g_flat^T)), against (c)
as it is. XLA:CPU splits a plain norm into three kernels (square, partial sums, sum and sqrt) and
TensorFlow's runtime pays a few microseconds per kernel; a matmul is one.

    python benchmarks/proto_dot_norms.py [--case reference] [--repeats 9]

The product is not changed: the norm is swapped in this process only, for a second program.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mnist_clip.tf_setup import import_tensorflow  # noqa: E402

tf = import_tensorflow()

import numpy as np  # noqa: E402

from bench_train import CASES  # noqa: E402
from mnist_clip import training  # noqa: E402
from mnist_clip.config import Config  # noqa: E402
from mnist_clip.data import load_dataset  # noqa: E402

PLAIN_NORM = tf.norm


def matmul_norm(tensor, *args, **kwargs):
    """tf.norm(tensor) as one matmul kernel; any other use of tf.norm unchanged."""
    if args or kwargs:
        return PLAIN_NORM(tensor, *args, **kwargs)
    if ROWWISE and len(tensor.shape) == 2:
        # one short dot per row, then their sum: float32 error of a row's length, not the tensor's
        rows = tf.matmul(tensor[:, tf.newaxis, :], tensor[:, :, tf.newaxis])
        return tf.sqrt(tf.reduce_sum(rows))
    flat = tf.reshape(tensor, [1, -1])
    return tf.sqrt(tf.reshape(tf.matmul(flat, flat, transpose_b=True), []))


ROWWISE = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=list(CASES), default="reference")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--check-only", action="store_true", help="compare the values, time nothing")
    parser.add_argument("--rowwise", action="store_true", help="a matrix's norm as one short dot per row, summed")
    args = parser.parse_args()
    global ROWWISE
    ROWWISE = args.rowwise
    config = Config().replace(**CASES[args.case][0])
    dataset = load_dataset("mnist-5k", None)
    plain = training.Trainer(config, dataset)
    plain_values, _ = plain.train_chunks(0)  # traced now, with the plain norm
    training._PROGRAMS.clear()
    tf.norm = matmul_norm
    try:
        with_matmul = training.Trainer(config, dataset)
        matmul_values, _ = with_matmul.train_chunks(0)
    finally:
        tf.norm = PLAIN_NORM
    relative = np.abs(matmul_values - plain_values) / np.maximum(np.abs(plain_values), 1e-7)
    step, column = np.unravel_index(relative.argmax(), relative.shape)
    first = relative[:5].max()
    print(f"{args.case}: largest relative difference of the warm-up epoch's values {relative.max():.1e} "
          f"({plain.columns[column]} at step {step}), {first:.1e} on the first 5 steps")
    if args.check_only:
        for step in range(5):
            column = relative[step].argmax()
            print(f"  step {step}: {relative[step].max():.1e} ({plain.columns[column]})")
        return
    trainers = {"(c) as it is": plain, "(c) norms as matmuls": with_matmul}
    ms = {name: [] for name in trainers}
    for _ in range(args.repeats):
        for name, trainer in trainers.items():
            started = time.perf_counter()
            for epoch in range(args.epochs):
                trainer.train_chunks(epoch)
            ms[name].append(1000 * (time.perf_counter() - started) / (args.epochs * trainer.steps_per_epoch))
    for name, values in ms.items():
        print(f"  {name:<22} {statistics.median(values):.3f} ms/step median, {min(values):.3f} best")
    ratios = [a / b for a, b in zip(*ms.values())]
    print(f"  as it is / matmul norms: {statistics.median(ratios):.3f} (median of paired rounds); "
          f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
