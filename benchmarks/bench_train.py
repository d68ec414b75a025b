"""Milliseconds per training step: the tutorial's eager loop, Keras fit, and mnist-clip's
compiled loop with and without logging, against the machine's FLOP limit and against the
same logging written in JAX, for the reference net (with SGD, and with Adam), a deep one
(10 sigmoid layers of 128) and the recurrent net of the `rnn` recipe (28 time steps of
width 128, Keras's SimpleRNN in (b)).

    python benchmarks/bench_train.py [--dataset mnist-5k | --data-path PATH] [--repeats 5] [--case reference]
                                     [--variants cdf]

Every variant trains the same model from the same initial weights on the same
data, batch 128, global-norm clipping at 15. Each is warmed up for one epoch
(tracing, compiling, caches), then timed over --epochs epochs, --repeats rounds
in which the variants take turns; the table shows medians, and a/c, b/c, c/d and c/e
are medians of the ratios within each round ((e) logs everything but the steps taken
and the weights' norms: c/e is what those columns cost). Results also go to a JSON file (--json).

(f) is the loop a JAX expert writes (benchmarks/jax_loop.py: jax.jit, lax.scan over an
epoch's batches, no host round-trip within a batch shape) logging the same columns as (c).
c/f compares the two. Its warm-up epoch is checked against (c)'s: every column of every
step must agree to float32 rounding (the same weights, data and order), or the benchmark
stops; the largest difference is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from mnist_clip.console.tf_setup import import_tensorflow  # noqa: E402

tf = import_tensorflow()

from mnist_clip.config import Config  # noqa: E402
from mnist_clip.data import load_dataset  # noqa: E402
from mnist_clip.config import layer_sizes  # noqa: E402
from mnist_clip.nn.model import ACTIVATION_FUNCTIONS, config_params, one_hot, prepare_inputs  # noqa: E402
from mnist_clip.nn import N_ROWS, ROW_WIDTH  # noqa: E402
from mnist_clip.training.step import Trainer  # noqa: E402

# name -> (config changes, variants timed). The adaptive clipping methods have no
# tutorial or Keras counterpart: for them only what logging costs (c/d) is timed.
CASES = {
    "reference": ({}, "abcdef"),
    "reference-adam": ({"optimizer": "adam", "lr": 0.001}, "abcde"),
    "deep-sigmoid-10x128": ({"hidden": (128,) * 10, "activation": "sigmoid"}, "abcdf"),
    "reference-agc": ({"clip": "agc", "clip_norm": 0.05}, "cd"),
    "reference-autoclip": ({"clip": "autoclip"}, "cd"),
    "rnn": ({"model": "rnn", "hidden": (128,), "activation": "tanh", "input_scale": 255.0, "lr": 0.1,
             "clip_norm": 1.0}, "abcdef"),
}


def n_weights(config: Config) -> int:
    """Multiply-adds per example of the forward pass (for the MLP, its number of weights)."""
    if config.model == "rnn":
        width = config.hidden[0]
        return N_ROWS * (ROW_WIDTH * width + width * width) + width * 10
    sizes = layer_sizes(config.hidden)
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def interleaved_ms_per_step(runners: dict, epochs: int, repeats: int, steps_per_epoch: int) -> tuple[dict, dict]:
    """Warm each runner up for one epoch, then time `epochs` epochs of each in turn,
    `repeats` rounds: interleaving spreads the machine's drift over all variants.
    Returns the timings and what each runner's warm-up epoch returned."""
    warm_up = {key: run(1) for key, run in runners.items()}
    ms: dict = {key: [] for key in runners}
    for _ in range(repeats):
        for key, run in runners.items():
            started = time.perf_counter()
            run(epochs)
            ms[key].append(1000 * (time.perf_counter() - started) / (epochs * steps_per_epoch))
    return {key: {"ms_per_step": statistics.median(v), "best_ms_per_step": min(v), "runs_ms_per_step": v}
            for key, v in ms.items()}, warm_up


def keras_optimizer(config: Config, **clipping):
    """The Keras optimizer of the config (SGD or Adam), with Keras's own clipping arguments."""
    import keras

    if config.optimizer == "adam":
        return keras.optimizers.Adam(config.lr, beta_1=config.beta1, beta_2=config.beta2, epsilon=config.epsilon,
                                     **clipping)
    return keras.optimizers.SGD(config.lr, **clipping)


def eager_reference(config: Config, dataset):
    """(a) The tutorial's loop as written: a tape per step, clip_by_global_norm, and
    each of the six norms turned into a Python float before and after, every step;
    plain SGD by hand, Adam by the Keras optimizer's apply_gradients."""
    params = config_params(config)
    variables = list(params.values())
    act = ACTIVATION_FUNCTIONS[config.activation]
    n_layers = config.n_layers
    x_all = tf.constant(prepare_inputs(dataset.x_train, config.input_scale))
    y_all = tf.constant(one_hot(dataset.y_train))
    batches = tf.data.Dataset.from_tensor_slices((x_all, y_all)).batch(config.batch_size)
    logged = []
    optimizer = keras_optimizer(config) if config.optimizer != "sgd" else None

    def run(n_epochs: int) -> None:
        for _ in range(n_epochs):
            for x, y in batches:
                with tf.GradientTape() as tape:
                    if config.model == "rnn":
                        rows = tf.reshape(x, [-1, N_ROWS, ROW_WIDTH])
                        state = tf.zeros([tf.shape(x)[0], config.hidden[0]])
                        for t in range(N_ROWS):
                            state = act(rows[:, t] @ params["wx"] + state @ params["wh"] + params["bh"])
                        h = state @ params["wo"] + params["bo"]
                    else:
                        h = x
                        for layer in range(1, n_layers + 1):
                            z = h @ params[f"w{layer}"] + params[f"b{layer}"]
                            h = act(z) if layer < n_layers else z
                    loss = tf.reduce_mean(tf.reduce_mean(tf.square(y - h), axis=1))
                grads = tape.gradient(loss, variables)
                before = [float(tf.norm(g)) for g in grads]
                grads, _ = tf.clip_by_global_norm(grads, config.clip_norm)
                after = [float(tf.norm(g)) for g in grads]
                if optimizer is not None:
                    optimizer.apply_gradients(zip(grads, variables))
                else:
                    for variable, grad in zip(variables, grads):
                        variable.assign_sub(config.lr * grad)
                logged.append((before, after))

    return run


def keras_fit(config: Config, dataset):
    """(b) keras.Sequential with the same layers and weights (for the rnn: SimpleRNN, then Dense),
    fit() with SGD or Adam(global_clipnorm=clip_norm)."""
    import keras

    if config.model == "rnn":
        layers = [keras.Input((N_ROWS, ROW_WIDTH)), keras.layers.SimpleRNN(config.hidden[0], activation=config.activation)]
    else:
        layers = [keras.Input((784,))] + [keras.layers.Dense(width, activation=config.activation) for width in config.hidden]
    model = keras.Sequential(layers + [keras.layers.Dense(10)])
    model.set_weights([v.numpy() for v in config_params(config).values()])
    model.compile(optimizer=keras_optimizer(config, global_clipnorm=config.clip_norm), loss="mse")
    x = prepare_inputs(dataset.x_train, config.input_scale)
    if config.model == "rnn":
        x = x.reshape(-1, N_ROWS, ROW_WIDTH)
    y = one_hot(dataset.y_train)

    def run(n_epochs: int) -> None:
        model.fit(x, y, batch_size=config.batch_size, epochs=n_epochs, shuffle=False, verbose=0)

    return run


def mnist_clip_loop(config: Config, dataset, log_norms: bool, log_updates: bool = True):
    """(c)/(d)/(e) mnist-clip's compiled chunk, one epoch per call, with or without the norms
    (and, for (e), with every norm but the steps taken and the weights' norms)."""
    trainer = Trainer(config, dataset, log_norms=log_norms, log_updates=log_updates)

    def run(n_epochs: int):
        values = None
        for epoch in range(n_epochs):
            values, _, _ = trainer.train_chunks(epoch)  # the records reach Python once per chunk, as in a real run
        return values  # the last epoch's

    return run


def jax_expert_loop(config: Config, dataset):
    """(f) The same training and logging as (c), in JAX: benchmarks/jax_loop.py."""
    from jax_loop import jax_loop

    return jax_loop(config, dataset)


# (f)'s values against (c)'s: the same arithmetic in another order of float32 rounding. Measured
# differences are a few units in the last place (below 1e-6 relative) over a whole epoch.
CHECK_RTOL = 1e-5
CHECK_ATOL = 1e-7  # for values near zero (an update of a tensor whose gradient vanished)
CHECK_FIRST_STEPS = 5


def check_same_values(config: Config, c_values, f_values) -> dict:
    """Every column of (f)'s warm-up epoch against (c)'s; raise if any differs by more than
    float32 rounding. Returns the largest relative differences (first steps, whole epoch)."""
    import numpy as np

    from mnist_clip.runs.schema import step_value_columns

    columns = step_value_columns(config.net, config.clip)
    c_values, f_values = np.asarray(c_values, np.float64), np.asarray(f_values, np.float64)
    if c_values.shape != f_values.shape:
        raise RuntimeError(f"(f) ran {f_values.shape[0]} steps of {f_values.shape[1]} columns, "
                           f"(c) {c_values.shape[0]} of {c_values.shape[1]}")
    difference = np.abs(f_values - c_values)
    relative = difference / np.maximum(np.abs(c_values), CHECK_ATOL)
    bad = difference > CHECK_RTOL * np.abs(c_values) + CHECK_ATOL
    if bad.any():
        step, column = np.argwhere(bad)[0]
        raise RuntimeError(f"(f) differs from (c) at step {step}, {columns[column]}: "
                           f"{f_values[step, column]!r} vs {c_values[step, column]!r}")
    worst = np.unravel_index(relative.argmax(), relative.shape)
    # flags and shares of a batch or of units are counts: rounding cannot excuse a difference there
    counts = [i for i, name in enumerate(columns)
              if name == "accuracy" or name.endswith("clipped") or name.startswith(("dead_", "saturated_"))]
    return {"steps": int(len(c_values)), "columns": len(columns),
            f"max_relative_first_{CHECK_FIRST_STEPS}_steps": float(relative[:CHECK_FIRST_STEPS].max()),
            "max_relative_epoch": float(relative.max()),
            "worst": {"step": int(worst[0]), "column": columns[worst[1]]},
            "flags_and_shares_equal": bool(np.array_equal(c_values[:, counts], f_values[:, counts]))}


def matmul_throughput(size: int = 2048, repeats: int = 20) -> float:
    """fp32 FLOP/s of a large square matmul in TensorFlow (median of repeats)."""
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    (a @ b).numpy()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        (a @ b).numpy()
        seconds.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(seconds)


def peak_rss_of_train(args: argparse.Namespace, with_plots: bool = True) -> float:
    """Peak resident memory (MB) of a whole `mnist-clip train` on the benchmark's data.

    Read from the child's VmHWM while it runs: getrusage(RUSAGE_CHILDREN) would
    report this (large) process's size, which a forked child inherits as its
    starting high-water mark.
    """
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "mnist_clip", "train", "--out", out, "--name", "rss"]
        command += ["--data-path", args.data_path] if args.data_path else ["--dataset", args.dataset]
        command += [] if with_plots else ["--no-plots"]
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peak_kb = 0
        while child.poll() is None:
            try:
                status = Path(f"/proc/{child.pid}/status").read_text()
                peak_kb = max(peak_kb, int(status.split("VmHWM:")[1].split()[0]))
            except (OSError, IndexError):
                pass
            time.sleep(0.02)
        if child.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed with status {child.returncode}")
    return peak_kb / 1024


def bench_case(name: str, config: Config, variants: str, dataset, args: argparse.Namespace) -> dict:
    """Time the variants of one net; return its figures and ratios."""
    print(f"\n{name}: {n_weights(config):,} multiply-adds per example, clip {config.clip}, {config.optimizer}", flush=True)
    labels = {
        "a": "eager loop (tutorial)",
        "b": "Keras fit, global_clipnorm",
        "c": "mnist-clip, full logging",
        "d": "mnist-clip, logging off",
        "e": "mnist-clip, no update columns",
        "f": "JAX expert, full logging",
    }
    makers = {
        "a": lambda: eager_reference(config, dataset),
        "b": lambda: keras_fit(config, dataset),
        "c": lambda: mnist_clip_loop(config, dataset, log_norms=True),
        "d": lambda: mnist_clip_loop(config, dataset, log_norms=False),
        "e": lambda: mnist_clip_loop(config, dataset, log_norms=True, log_updates=False),
        "f": lambda: jax_expert_loop(config, dataset),
    }
    if args.variants:
        variants = "".join(key for key in variants if key in args.variants or key == "c")
    labels = {key: labels[key] for key in variants}
    runners = {key: makers[key]() for key in variants}
    steps_per_epoch = config.steps_per_epoch(len(dataset.y_train))
    results, warm_up = interleaved_ms_per_step(runners, args.epochs, args.repeats, steps_per_epoch)
    check = None
    if "f" in variants:
        check = check_same_values(config, warm_up["c"], warm_up["f"])
        print(f"  check: (f)'s {check['columns']} columns equal (c)'s to float32 rounding over the warm-up "
              f"epoch's {check['steps']} steps (largest relative difference "
              f"{check[f'max_relative_first_{CHECK_FIRST_STEPS}_steps']:.1e} on the first {CHECK_FIRST_STEPS}, "
              f"{check['max_relative_epoch']:.1e} in all; flags, accuracy and inactive shares "
              f"{'identical' if check['flags_and_shares_equal'] else 'NOT identical'})", flush=True)
    for key, label in labels.items():
        results[key]["label"] = label
        print(f"  ({key}) {label:<28} {results[key]['ms_per_step']:8.3f} ms/step (best {results[key]['best_ms_per_step']:.3f})",
              flush=True)

    flops = matmul_throughput()
    flop_per_step = 3 * 2 * config.batch_size * n_weights(config)
    limit_ms = 1000 * flop_per_step / flops
    c = results["c"]["ms_per_step"]

    def paired(top: str, bottom: str) -> float:
        """Median over rounds of the ratio within each round: the variants of a round
        ran back to back, so the machine's drift between rounds cancels."""
        runs = zip(results[top]["runs_ms_per_step"], results[bottom]["runs_ms_per_step"])
        return statistics.median(t / b for t, b in runs)

    ratios = {}
    if "d" in variants:
        ratios["c/d"] = paired("c", "d")
    ratios["c/limit"] = c / limit_ms
    if "f" in variants:
        ratios["c/f"] = paired("c", "f")  # mnist-clip against the JAX expert's loop, the same columns
        ratios["f/limit"] = results["f"]["ms_per_step"] / limit_ms
    if "e" in variants:
        ratios["c/e"] = paired("c", "e")  # what the update columns cost
    if "b" in variants:
        ratios = {"b/c": paired("b", "c"), **ratios}
    if "a" in variants:
        ratios = {"a/c": paired("a", "c"), **ratios}
    print(f"  matmul throughput: {flops / 1e9:.1f} GFLOP/s fp32 (2048x2048)")
    print(f"  FLOP limit per step: 3 x 2 x {config.batch_size} x {n_weights(config):,} multiply-adds = "
          f"{flop_per_step / 1e6:.1f} MFLOP -> {limit_ms:.3f} ms/step")
    print("  ratio     measured  target")
    targets = {**TARGETS, **CASE_TARGETS.get(name, {})}
    for ratio, value in ratios.items():
        if ratio not in targets:
            print(f"  {ratio:<8} {value:9.2f}")
            continue
        op, target = targets[ratio]
        met = value >= target if op == ">=" else value <= target
        print(f"  {ratio:<8} {value:9.2f}  {op} {target:<5} {'met' if met else 'MISSED'}")
    return {
        "config": {"model": config.model, "hidden": list(config.hidden), "activation": config.activation,
                   "clip": config.clip, "optimizer": config.optimizer},
        "variants": results,
        "matmul_gflops": flops / 1e9,
        "flop_per_step": flop_per_step,
        "flop_limit_ms_per_step": limit_ms,
        "ratios": ratios,
        "check_against_c": check,
    }


TARGETS = {"a/c": (">=", 8.0), "b/c": (">=", 3.0), "c/d": ("<=", 1.10), "c/limit": ("<=", 2.0), "c/e": ("<=", 1.05),
           "c/f": ("<=", 1.0)}
CASE_TARGETS = {"rnn": {"c/f": ("<=", 1.2)}}  # a recurrent step is 28 small dependent matmuls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist-5k", choices=["mnist-5k", "mnist", "auto"])
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per timed run")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--case", choices=list(CASES), action="append", help="the nets to time (default: all)")
    parser.add_argument("--variants", default=None,
                        help="time only these of each case's variants, e.g. cdf ((c) always runs)")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-memory run of `mnist-clip train`")
    parser.add_argument("--json", default="benchmarks/results/bench_train.json")
    args = parser.parse_args()

    base = Config(dataset=args.dataset, data_path=args.data_path)
    dataset = load_dataset(base.dataset, base.data_path)
    load_before = os.getloadavg()
    print(f"load average before: {' '.join(f'{load:.2f}' for load in load_before)}")
    print(f"data: {dataset.name}, {len(dataset.y_train):,} training digits; "
          f"{args.epochs} epochs per timed run, median of {args.repeats}", flush=True)
    cases = {name: bench_case(name, base.replace(**CASES[name][0]), CASES[name][1], dataset, args)
             for name in (args.case or CASES)}
    rss_mb = None
    if not args.no_rss:
        rss_mb = peak_rss_of_train(args)
        print(f"\npeak resident memory of `mnist-clip train` on {dataset.name}: {rss_mb:.0f} MB (target < 1000)")
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "tensorflow": tf.__version__, "jax": sys.modules["jax"].__version__ if "jax" in sys.modules else None,
                    "load_average_before": load_before},
        "data": dataset.describe(),
        "epochs_per_run": args.epochs,
        "repeats": args.repeats,
        "cases": cases,
        "targets": {k: f"{op} {t}" for k, (op, t) in TARGETS.items()},
        "case_targets": {case: {k: f"{op} {t}" for k, (op, t) in targets.items()} for case, targets in CASE_TARGETS.items()},
        "peak_rss_mb_train": rss_mb,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
