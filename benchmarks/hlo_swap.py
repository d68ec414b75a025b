"""Run TensorFlow's XLA program for mnist-clip's training chunk under JAX's XLA:CPU runtime.

    XLA_FLAGS="--xla_dump_to=DIR --xla_dump_hlo_as_text" python -c "...one Trainer epoch..."
    python benchmarks/hlo_swap.py DIR/module_XXXX.*.before_optimizations.txt [--case reference]

The module TensorFlow hands to XLA (before XLA's optimizations) is parsed, compiled by jaxlib's
XLA and timed on the real batches and weights, beside (f). If it runs as fast as (f), what (c)
pays beyond (f) is not in the program but in how TensorFlow compiles or runs it.
A diagnostic: it reaches jaxlib's internal HLO parser (jaxlib._hlo), which may move between versions.
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

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax._src.lib import _jax  # noqa: E402
from jaxlib import _hlo  # noqa: E402

from bench_train import CASES  # noqa: E402
from jax_loop import JaxTrainer  # noqa: E402
from mnist_clip.config import Config  # noqa: E402
from mnist_clip.data import load_dataset  # noqa: E402
from mnist_clip.training.optimizers import hyperparameters  # noqa: E402
from mnist_clip.training.step import Trainer  # noqa: E402


def compile_hlo_text(text: str):
    """An executable of jaxlib's XLA:CPU client from a module's HLO text."""
    module = _hlo.hlo_module_from_text(text)
    computation = _hlo.XlaComputation(module.as_serialized_hlo_module_proto())
    mlir = _jax.mlir.xla_computation_to_mlir_module(computation)
    client = jax.devices()[0].client
    options = _jax.CompileOptions()
    return client.compile_and_load(mlir, client.devices()[:1], options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("module")
    parser.add_argument("--case", choices=list(CASES), default="reference")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    config = Config().replace(**CASES[args.case][0])
    dataset = load_dataset("mnist-5k", None)
    jax_trainer = JaxTrainer(config, dataset)
    xb, yb = jax_trainer.batches[0]
    executable = compile_hlo_text(open(args.module).read())
    params = [np.asarray(jax_trainer.params[name]) for name in config.net.names]
    # the chunk's inputs in TensorFlow's order: the weights, hyper, threshold, iterations, xb, yb
    inputs = [*params, hyperparameters(config).numpy(), np.float32(config.clip_norm), np.int64(0),
              np.asarray(xb), np.asarray(yb)]
    device = jax.devices()[0]
    def fresh_buffers():
        # TensorFlow's program updates the weights in place (it donates its inputs): new ones each call
        with jax.enable_x64(True):  # keep the int64 step count (TensorFlow's iterations) as it is
            return [jax.device_put(np.asarray(value), device) for value in inputs]

    def swapped(buffers):
        outputs = executable.execute(buffers)
        return np.asarray(outputs[0])

    def native(_):
        t = jax_trainer
        t.params, t.stopped, rows, steps_run = t.program(t.params, t.lr, t.clip_norm, t.stopped, xb, yb)
        np.asarray(rows)

    trainer = Trainer(config, dataset)  # (c): the same program, compiled and run by TensorFlow
    tf_xb, tf_yb = (t[: len(xb)] for t in trainer.epoch_chunk(0))  # the same full batches

    def in_tensorflow(_):
        values, steps_run, stopped = trainer.run_chunk(tf_xb, tf_yb)
        values.numpy(), int(steps_run), bool(stopped)

    runs = {"(c) TF's program in TF": in_tensorflow, "TF's program under jaxlib": swapped,
            "(f) JAX's own program": native}
    # the same numbers first: TF's program under jaxlib against (f), from the same weights and batches
    first_values = swapped(fresh_buffers())
    t = jax_trainer
    t.params, t.stopped, rows, _ = t.program(t.params, t.lr, t.clip_norm, t.stopped, xb, yb)
    difference = np.abs(first_values - np.asarray(rows)) / np.maximum(np.abs(np.asarray(rows)), 1e-7)
    print(f"largest relative difference of its {first_values.shape[0]} steps' values from (f)'s: {difference.max():.1e}")
    for run in runs.values():
        run(fresh_buffers()), run(fresh_buffers())
    seconds = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            buffers = fresh_buffers()
            started = time.perf_counter()
            run(buffers)
            seconds[name].append(time.perf_counter() - started)
    n_steps = int(xb.shape[0])
    print(f"{args.case}: {n_steps} steps per call, load {os.getloadavg()[0]:.2f}")
    for name, values in seconds.items():
        print(f"  {name:<28} {1000 * min(values) / n_steps:.3f} ms/step best, "
              f"{1000 * statistics.median(values) / n_steps:.3f} median")


if __name__ == "__main__":
    main()
