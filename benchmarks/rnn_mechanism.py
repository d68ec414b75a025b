"""How a recipe's runs fail, measured over the 10 steps before the first non-finite one.

    flock /work/heavy.lock python benchmarks/rnn_mechanism.py --config rnn_explode --seeds 5

For each seed: the first non-finite step, the output layer's and the hidden (recurrent)
layer's median share of the squared global norm over the run-up, the signal's growth back
through the net (dh_6 / dh_28 for the recurrent net) over the run-up and at the first step,
the share of saturated or dead units, and the fastest-growing tensor. A run that does not
diverge within the epochs is reported with its test accuracy. Runs in memory; writes nothing.
Extra `key=value` arguments override the recipe (e.g. lr=0.01 activation=relu); a value
list `key=a,b` measures every combination.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from mnist_clip.config import Config, load_toml
from mnist_clip.data import load_mnist_5k
from mnist_clip.runs.diagnosis import FIRST_INKED_ROW, run_up_mechanism
from mnist_clip.recipe_files import resolve_config_file
from mnist_clip.training.step import Trainer, train_epochs


def value_of(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


def shown(value, scale: float = 1.0) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{scale * value:.3g}"


def measure(config, dataset) -> dict:
    trainer = Trainer(config, dataset)
    parts, last = [], None
    for result in train_epochs(trainer):
        parts.append(result.values)
        last = result
    values = np.concatenate(parts)
    metrics = dict(zip(trainer.columns, values.T))
    bad = ~np.isfinite(metrics["loss"]) | ~np.isfinite(metrics["global_norm_before"])
    first_gain = None
    if config.net.is_recurrent and metrics["dh28"][0] > 0:
        first_gain = float(max(metrics[f"dh{t}"][0] for t in range(1, FIRST_INKED_ROW + 1)) / metrics["dh28"][0])
    if not bad.any():
        last_epoch = run_up_mechanism(metrics, len(values), config.net, window=trainer.steps_per_epoch)
        return {"diverged": False, "accuracy": last.test_accuracy, "first_gain": first_gain, "steps": len(values),
                "last_epoch": last_epoch, "clipped": int(metrics["clipped"].sum())}
    step = int(np.argmax(bad))
    return {"diverged": True, "step": step, "first_gain": first_gain, "accuracy": last.test_accuracy,
            "mechanism": run_up_mechanism(metrics, step, config.net)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="rnn_explode")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1234)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("overrides", nargs="*", help="key=value")
    args = parser.parse_args()
    base = load_toml(resolve_config_file(args.config))
    pairs = [(key.replace("-", "_"), [value_of(v) for v in values.split(",")])
             for key, values in (o.split("=", 1) for o in args.overrides)]
    dataset = load_mnist_5k("measured")
    for combination in itertools.product(*(values for _, values in pairs)):
        changes = dict(zip((key for key, _ in pairs), combination))
        if args.epochs:
            changes["epochs"] = args.epochs
        changes.setdefault("dataset", "mnist-5k")
        print(f"{args.config} {' '.join(f'{k}={v}' for k, v in changes.items())}", flush=True)
        report(base, changes, dataset, args)


def report(base, changes, dataset, args) -> None:
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        config = Config(**{**base, **changes, "seed": seed})
        row = measure(config, dataset)
        first = f"{row['first_gain']:.3g}" if row["first_gain"] is not None else "-"
        if not row["diverged"]:
            m = row["last_epoch"]
            print(f"  seed {seed}: no divergence in {row['steps']} steps; test accuracy {100 * row['accuracy']:.1f}%; "
                  f"{m['signal_near']}/{m['signal_far']} at step 0 {first}, over the last epoch "
                  f"{shown(m['signal_growth'])}; inactive units {shown(m['inactive'], 100)}%; clipped steps "
                  f"{row['clipped']}", flush=True)
            continue
        m = row["mechanism"]
        if m is None:
            print(f"  seed {seed}: non-finite at step {row['step']}, no finite step before")
            continue
        growth = m["growth"].get(m["fastest"]) if m["fastest"] else None
        print(f"  seed {seed}: non-finite at step {row['step']}; run-up steps {m['from_step']}-{m['to_step']}: "
              f"output layer {shown(m['output_share'], 100)}% of the norm^2, hidden {shown(m['hidden_share'], 100)}%; "
              f"{m['signal_near']}/{m['signal_far']} {shown(m['signal_growth'])} (step 0: {first}); inactive units "
              f"{shown(m['inactive'], 100)}%; fastest {m['fastest']} x{shown(growth)}/step", flush=True)


if __name__ == "__main__":
    main()
