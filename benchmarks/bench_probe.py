"""What GradientProbe costs per step: Keras `fit` with the optimizer's own clipping, plain and
watched by the probe, on the reference MLP built in Keras and on a small CNN.

    python benchmarks/bench_probe.py [--rounds 5] [--epochs 6] [--case mlp]

Both variants train the same model from the same initial weights on the 4,000 training digits of
mnist-5k, batch 128. The reference MLP: 784-256-128-10 ReLU, MSE, SGD 0.01 with global_clipnorm 15,
inputs / 50. The CNN: Conv2D 8 3x3, max-pool, Conv2D 16 3x3, max-pool, Dense 10, cross-entropy,
Adam 1e-3 with global_clipnorm 1. Variants: plain fit; with the probe (on_nonfinite="stop", the
default: a step is applied only if finite); with the probe and on_nonfinite="continue". Per run,
the fastest epoch after the first (tracing) gives ms per step (the machine is shared: the fastest
epoch is the least disturbed); the end of each epoch (the probe's one host read and its file
writing) is timed apart and, per step, added for the second ratio. In each round the variants take
turns; the table shows medians over the rounds, the ratios taken within each round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mnist_clip.data import load_mnist_5k  # noqa: E402
from mnist_clip.probe import GradientProbe  # noqa: E402

BATCH = 128


def reference_mlp():
    init = keras.initializers.TruncatedNormal(stddev=0.1, seed=1234)
    model = keras.Sequential([keras.Input((784,)),
                              keras.layers.Dense(256, activation="relu", kernel_initializer=init),
                              keras.layers.Dense(128, activation="relu", kernel_initializer=init),
                              keras.layers.Dense(10, kernel_initializer=init)], name="reference_mlp")
    return model, lambda: keras.optimizers.SGD(0.01, global_clipnorm=15.0), "mse"


def small_cnn():
    keras.utils.set_random_seed(1234)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.MaxPooling2D(), keras.layers.Conv2D(16, 3, activation="relu"),
                              keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(10)],
                             name="small_cnn")
    return model, lambda: keras.optimizers.Adam(1e-3, global_clipnorm=1.0), keras.losses.CategoricalCrossentropy(
        from_logits=True)


CASES = {"mlp": reference_mlp, "cnn": small_cnn}


class EpochClock(keras.callbacks.Callback):
    """Each epoch's training time (from its start to its end, before the probe's end of epoch:
    this clock is the first callback) and the gap to the next epoch (the probe's host read and
    file writing, and Keras's own epoch bookkeeping)."""

    def on_train_begin(self, logs=None):
        self.steps, self.gaps, self.ended = [], [], None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
        if self.ended is not None:
            self.gaps.append(self.started - self.ended)

    def on_epoch_end(self, epoch, logs=None):
        self.ended = time.perf_counter()
        self.steps.append(self.ended - self.started)


VARIANTS = {"plain": None, "probe": "stop", "probe-continue": "continue"}


def time_variant(case: str, variant: str, x, y, epochs: int, out: str) -> tuple[float, float]:
    """(ms per step, the fastest of the epochs after the first; the gap between epochs in ms
    per step, median)."""
    model, optimizer, loss = CASES[case]()
    clock = EpochClock()
    callbacks = [clock]
    if VARIANTS[variant] is not None:
        probe = GradientProbe(out=out, name=f"{case}-{time.perf_counter_ns()}", plots=False, verbose=False,
                              on_nonfinite=VARIANTS[variant])
        model.compile(optimizer=probe.wrap(optimizer()), loss=loss)
        callbacks.append(probe)
    else:
        model.compile(optimizer=optimizer(), loss=loss)
    model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
    steps = -(-len(x) // BATCH)
    return 1000 * min(clock.steps[1:]) / steps, 1000 * float(np.median(clock.gaps[1:])) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--case", choices=list(CASES), action="append")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    data = load_mnist_5k("benchmark")
    y = keras.utils.to_categorical(data.y_train, 10).astype("float32")
    inputs = {"mlp": data.x_train.reshape(-1, 784).astype("float32") / 50.0,
              "cnn": data.x_train.reshape(-1, 28, 28, 1).astype("float32") / 255.0}
    out = tempfile.mkdtemp(prefix="bench-probe-")
    results = {}
    try:
        for case in args.case or list(CASES):
            times = {variant: [] for variant in VARIANTS}
            for _ in range(args.rounds):
                for variant in VARIANTS:  # the variants take turns
                    times[variant].append(time_variant(case, variant, inputs[case], y, args.epochs, out))
            plain = [step for step, _ in times["plain"]]
            results[case] = {}
            for variant, rows in times.items():
                steps = [step for step, _ in rows]
                with_gaps = [step + gap - plain_gap for (step, gap), (_, plain_gap) in zip(rows, times["plain"])]
                results[case][variant] = {
                    "ms_per_step": statistics.median(steps),
                    "over_plain": statistics.median(s / p for s, p in zip(steps, plain)),
                    "over_plain_with_epoch_end": statistics.median(s / p for s, p in zip(with_gaps, plain)),
                }
                row = results[case][variant]
                print(f"{case:4s} {variant:15s} {row['ms_per_step']:.3f} ms/step   x{row['over_plain']:.3f} of plain fit"
                      f"   x{row['over_plain_with_epoch_end']:.3f} with the end of each epoch", flush=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"uptime: {load}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"results": results, "uptime": load, "keras": keras.__version__}, file, indent=2)


if __name__ == "__main__":
    main()
