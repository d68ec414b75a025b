"""The README's "How to fix it" table: the ten-layer net's cures for vanishing gradients, over seeds.

    python examples/how_to_fix_it.py [--seeds 5] [--out outputs/how-to-fix-it]

Trains each row's recipe for every seed (30 epochs on the bundled digits, no pictures), then
prints a Markdown table: the medians of |δ1| / |δ11| and |g_w1| / |g_w11| over the first and
the last epoch, how far w1 moved from its start, and the test accuracy, as mean ± sd over the
seeds. Run folders go to --out; an existing folder of the same name is replaced.
"""

from __future__ import annotations

import argparse

import numpy as np

import mnist_clip as mc
from mnist_clip.runs.table import table_row

# (row, recipe, overrides): every row is the ten-layer net of 128 with one change
ROWS = [
    ("sigmoid, reference init, no clipping", "deep_sigmoid_noclip", {}),
    ("clipping alone (global norm 0.1)", "deep_sigmoid", {"clip_norm": 0.1}),
    ("Glorot init", "deep_sigmoid_noclip", {"init": "glorot"}),
    ("He init with ReLU", "deep_relu_he", {}),
    ("batch norm", "deep_sigmoid_batchnorm", {}),
    ("layer norm", "deep_sigmoid_layernorm", {}),
    ("residual", "deep_sigmoid_residual", {}),
    ("residual with ReLU", "deep_relu_residual", {}),
]


def spread(values: list[float], percent: bool = False) -> str:
    values = np.array(values, dtype=float) * (100 if percent else 1)
    unit = "%" if percent else ""
    if percent:
        return f"{values.mean():.1f}{unit} ± {values.std(ddof=1) if len(values) > 1 else 0:.1f}"
    return f"{np.median(values):.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default="outputs/how-to-fix-it")
    parser.add_argument("--row", action="append", help="only the rows whose recipe is this (repeatable)")
    args = parser.parse_args()
    lines = ["| cure | δ1/δ11 first -> last epoch | \\|g_w1\\|/\\|g_w11\\| first -> last | w1 moved | clipped steps "
             "| test accuracy |", "|---|---|---|---|---|---|"]
    for label, recipe, overrides in ROWS:
        if args.row and recipe not in args.row:
            continue
        rows, moved, clipped = [], [], []
        for seed in range(1234, 1234 + args.seeds):
            result = mc.train(recipe, out=args.out, name=f"{recipe}{'-' if overrides else ''}"
                              f"{'-'.join(f'{k}{v}' for k, v in overrides.items())}-seed{seed}",
                              overwrite=True, plots=False, progress="quiet", seed=seed, **overrides)
            rows.append(table_row(result.run))
            moved.append(result.run.epochs["w1_moved"][-1])
            clipped.append(rows[-1]["steps_clipped"])

        def ratio(key: str) -> str:
            return spread([row[key] for row in rows])

        lines.append(
            f"| {label} | {ratio('median_delta1_deltaL_first_epoch')} -> {ratio('median_delta1_deltaL_last_epoch')} "
            f"| {ratio('median_w1_wL_first_epoch')} -> {ratio('median_w1_wL_last_epoch')} | {spread(moved)} "
            f"| {int(np.median(clipped))} | {spread([row['test_accuracy'] for row in rows], percent=True)} |")
        print(lines[-1], flush=True)
    print(f"\nmedians over {args.seeds} seeds (ratios, w1 moved, clipped steps); accuracy mean ± sd\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
