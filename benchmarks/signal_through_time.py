"""How much of the loss's signal reaches the first time step, per run and per model, from run folders.

    mnist-clip sweep --config rnn_vanish --grid model=rnn,lstm --seeds 5 --name vs
    python benchmarks/signal_through_time.py outputs/vs/cells/*

For each recurrent run: its model, seed and test accuracy, and the median over an epoch's
steps of |dL/dh_1| / |dL/dh_28| (and for an LSTM |dL/dc_1| / |dL/dc_28|, through the cell
state) at step 0, in the first epoch and in the last. Then the same per model: the range over
its seeds. Reads the folders only.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from mnist_clip.runs.reader import read_run


def median_ratio(run, first: str, last: str, epoch: int) -> float:
    rows = run.metrics["epoch"] == epoch
    ratio = run.metrics[first][rows] / run.metrics[last][rows]
    ratio = ratio[np.isfinite(ratio)]
    return float(np.median(ratio)) if ratio.size else float("nan")


def measures(run) -> dict:
    last_epoch = int(run.metrics["epoch"].max())
    row = {"model": run.config.get("model"), "seed": run.config.get("seed"),
           "test_accuracy": (run.summary or {}).get("test_accuracy", float("nan"))}
    for prefix in ("dh", "dc"):
        if f"{prefix}1" not in run.metrics:
            continue
        first, last = f"{prefix}1", f"{prefix}{run.net.time_steps}"
        row[f"{prefix}1/{prefix}28 step 0"] = float(run.metrics[first][0] / run.metrics[last][0])
        row[f"{prefix}1/{prefix}28 epoch 1"] = median_ratio(run, first, last, 0)
        row[f"{prefix}1/{prefix}28 last epoch"] = median_ratio(run, first, last, last_epoch)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders of recurrent nets")
    rows = [measures(run) for run in map(read_run, parser.parse_args().runs) if run.net.is_recurrent]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print("  ".join(f"{c:>22}" for c in columns))
    for row in rows:
        print("  ".join(f"{row.get(c, ''):>22.3g}" if isinstance(row.get(c), float) else f"{row.get(c, ''):>22}"
                        for c in columns))
    groups = defaultdict(list)
    for row in rows:
        groups[row["model"]].append(row)
    print()
    for model, members in groups.items():
        accuracy = np.array([100 * m["test_accuracy"] for m in members])
        print(f"{model}: {len(members)} seeds, test accuracy {accuracy.mean():.1f}% ± {accuracy.std(ddof=1) if len(accuracy) > 1 else 0:.1f} "
              f"({accuracy.min():.1f}-{accuracy.max():.1f})")
        for column in columns[3:]:
            values = [m[column] for m in members if column in m]
            if values:
                print(f"  {column}: {min(values):.3g} to {max(values):.3g}")


if __name__ == "__main__":
    main()
