"""Time to result: the default `mnist-clip train` (pictures included) beside importing
TensorFlow the product's way, measured side by side, alternating, median of N.

    python benchmarks/bench_startup.py [-n 5] [--no-plots] [--phases] [-- extra train options]

Each repetition runs, in fresh processes and in alternating order, (a) `import_tensorflow()`
alone and (b) `mnist-clip train` into a temporary folder; the XLA compile cache is the
user's, warmed by one untimed run first, as on any run after the first. Prints the medians
and their ratio (the target is 2.0x, 1.6x the stretch).

With --phases, each timed run also says where its time goes, from the moment each of its
progress lines arrives: start-up and data (to the `data:` line), TensorFlow's import and the
run's set-up (to `run:`), the compiled step's trace and cache load with the first epoch (to
`epoch  1/`), the other epochs and the run's last files (to `drawing the pictures`), the
pictures (to `status:`) and the closing summary (to exit). These runs print their progress
lines; the others run with --quiet.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

# a phase ends when the run prints a line starting with its mark ("" = when the process exits)
PHASES = (("start-up and data", "data:"), ("TensorFlow import, set-up", "run:"),
          ("trace, cache load, epoch 1", "epoch  1/"), ("other epochs, last files", "drawing the pictures"),
          ("pictures", "status:"), ("summary and exit", ""))

IMPORT = "from mnist_clip.console.tf_setup import import_tensorflow; import_tensorflow()"


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def phase_seconds(command: list[str]) -> tuple[float, dict[str, float]]:
    """The run's wall time, and each phase's share of it from when its closing line arrived."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # each line as it is printed
    ends: dict[str, float] = {}
    for line in proc.stdout:
        for name, mark in PHASES:
            if mark and name not in ends and line.startswith(mark):
                ends[name] = time.perf_counter() - started
    if proc.wait() != 0:
        raise SystemExit(f"the run failed: {' '.join(command)}")
    total = time.perf_counter() - started
    ends[PHASES[-1][0]] = total
    missing = [name for name, _ in PHASES if name not in ends]
    if missing:
        raise SystemExit(f"no line for {', '.join(missing)} (with --no-plots, there is no pictures phase)")
    shares, before = {}, 0.0
    for name, _ in PHASES:
        shares[name], before = ends[name] - before, ends[name]
    return total, shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5, help="repetitions (median of these)")
    parser.add_argument("--no-plots", action="store_true", help="time the run without its pictures")
    parser.add_argument("--phases", action="store_true", help="also say where each run's time goes")
    parser.add_argument("extra", nargs="*", help="more `train` options")
    args = parser.parse_args()
    if args.phases and args.no_plots:
        parser.error("--phases times the pictures too: leave out --no-plots")
    phases: dict[str, list[float]] = {name: [] for name, _ in PHASES}
    with tempfile.TemporaryDirectory() as out:
        def train(name: str) -> list[str]:
            return [sys.executable, "-m", "mnist_clip", "train", "--out", out, "--name", name,
                    *([] if args.phases else ["--quiet"]), *(["--no-plots"] if args.no_plots else []), *args.extra]

        seconds(train("warm-up"))  # the compile cache and the page cache, as on any later run
        times: dict[str, list[float]] = {"import": [], "train": []}
        for i in range(args.n):
            order = ("import", "train") if i % 2 == 0 else ("train", "import")
            for what in order:
                if what == "train" and args.phases:
                    total, shares = phase_seconds(train(f"r{i}"))
                    times[what].append(total)
                    for name, value in shares.items():
                        phases[name].append(value)
                else:
                    times[what].append(seconds([sys.executable, "-c", IMPORT] if what == "import" else train(f"r{i}")))
    medians = {what: statistics.median(values) for what, values in times.items()}
    for what, values in times.items():
        print(f"{what:>6}: median {medians[what]:.2f} s  ({' '.join(f'{v:.2f}' for v in values)})")
    print(f" ratio: {medians['train'] / medians['import']:.2f}x the TensorFlow import")
    if args.phases:
        print("where a run's time goes (medians):")
        for name, values in phases.items():
            print(f"  {name:<28} {statistics.median(values):5.2f} s  ({' '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
