"""The compile cache is an optimisation, never a point of failure: damaged entries are
discarded and their programs compiled again, with the same results."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mnist_clip.console.tf_setup import cache_entry_is_whole

ROOT = Path(__file__).resolve().parent.parent


def train(cache: Path, out: Path, name: str, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MNIST_CLIP_XLA_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "mnist_clip", "train", "--dataset", "mnist-5k", "--epochs", "1",
                           "--hidden", "32", "--no-plots", "--quiet", "--out", str(out), "--name", name, *options],
                          capture_output=True, text=True, env=env, timeout=300)


def metrics(run: Path) -> np.ndarray:
    return np.genfromtxt(run / "metrics.csv", delimiter=",", skip_header=1)


def test_a_truncated_and_a_mismatched_cache_entry_are_discarded_and_recompiled(tmp_path):
    cache = tmp_path / "cache"  # never the user's cache
    first = train(cache, tmp_path, "first")
    assert first.returncode == 0, first.stderr
    assert len(list(cache.glob("xla-*/*.pb"))) == 1  # one program per run, the short last batch included
    other = train(cache, tmp_path, "other", "--clip", "norm")  # another clipping method: another program
    assert other.returncode == 0, other.stderr
    entries = sorted(cache.glob("xla-*/*.pb"))
    assert len(entries) == 2 and all(cache_entry_is_whole(path) for path in entries)
    truncated, mismatched = entries[:2]
    whole = truncated.read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])  # a full disk or a crash mid-write: "Can't parse" / short read
    mismatched.write_bytes(whole)  # another program's entry: "Serialized cache key does not match"
    assert not cache_entry_is_whole(truncated) and not cache_entry_is_whole(mismatched)

    second = train(cache, tmp_path, "second")
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr
    notes = [line for line in second.stderr.splitlines() if "compile cache" in line]
    assert len(notes) == 1 and "discarded 2 damaged entries" in notes[0], second.stderr
    np.testing.assert_allclose(metrics(tmp_path / "second"), metrics(tmp_path / "first"), rtol=1e-6, atol=0)
    assert train(cache, tmp_path, "other-again", "--clip", "norm").returncode == 0
    again = sorted(cache.glob("xla-*/*.pb"))
    assert truncated in again and mismatched in again  # compiled anew and stored again
    assert all(cache_entry_is_whole(path) for path in again)


def test_an_entry_of_garbage_is_not_whole(tmp_path):
    entry = tmp_path / "xla_compile_cache__1__2__XLA_CPU_JIT.pb"
    entry.write_bytes(os.urandom(4096))
    assert not cache_entry_is_whole(entry)
    entry.write_bytes(b"")
    assert not cache_entry_is_whole(entry)
