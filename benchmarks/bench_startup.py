"""Time to result: the default `mnist-clip train` (pictures included) beside importing
TensorFlow the product's way, measured side by side, alternating, median of N.

    python benchmarks/bench_startup.py [-n 5] [--no-plots] [-- extra train options]

Each repetition runs, in fresh processes and in alternating order, (a) `import_tensorflow()`
alone and (b) `mnist-clip train` into a temporary folder; the XLA compile cache is the
user's, warmed by one untimed run first, as on any run after the first. Prints the medians
and their ratio (the target is 2.0x, 1.6x the stretch).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

IMPORT = "from mnist_clip.console.tf_setup import import_tensorflow; import_tensorflow()"


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5, help="repetitions (median of these)")
    parser.add_argument("--no-plots", action="store_true", help="time the run without its pictures")
    parser.add_argument("extra", nargs="*", help="more `train` options")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        def train(name: str) -> list[str]:
            return [sys.executable, "-m", "mnist_clip", "train", "--out", out, "--name", name, "--quiet",
                    *(["--no-plots"] if args.no_plots else []), *args.extra]

        seconds(train("warm-up"))  # the compile cache and the page cache, as on any later run
        times: dict[str, list[float]] = {"import": [], "train": []}
        for i in range(args.n):
            order = ("import", "train") if i % 2 == 0 else ("train", "import")
            for what in order:
                times[what].append(seconds([sys.executable, "-c", IMPORT] if what == "import" else train(f"r{i}")))
    medians = {what: statistics.median(values) for what, values in times.items()}
    for what, values in times.items():
        print(f"{what:>6}: median {medians[what]:.2f} s  ({' '.join(f'{v:.2f}' for v in values)})")
    print(f" ratio: {medians['train'] / medians['import']:.2f}x the TensorFlow import")


if __name__ == "__main__":
    main()
