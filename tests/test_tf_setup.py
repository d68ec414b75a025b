"""The compile cache is an optimisation, never a point of failure: damaged entries are
discarded and their programs compiled again, with the same results."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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


def test_numpy_blas_runs_on_one_thread_while_a_run_or_a_probe_trains_and_is_given_back(tmp_path, monkeypatch):
    """OpenBLAS's idle threads spin on the cores TensorFlow trains on; a run and a probe keep
    numpy's BLAS on the calling thread from their first epoch to their end, and give the
    setting back afterwards."""
    import keras
    from threadpoolctl import threadpool_info, threadpool_limits

    from conftest import small_dataset
    from mnist_clip.config import Config
    from mnist_clip.experiment import run_experiment
    from mnist_clip.probe import GradientProbe
    from mnist_clip.training.step import Trainer

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    seen = []
    moved = Trainer.moved
    monkeypatch.setattr(Trainer, "moved", lambda self: (seen.append(blas_threads()), moved(self))[1])
    data = small_dataset(256, 64)
    with threadpool_limits(limits=2, user_api="blas"):
        assert set(blas_threads()) == {2}
        (tmp_path / "run").mkdir()
        run_experiment(Config(epochs=2, hidden=(16,)), data, tmp_path / "run", draw_plots=False)
        assert seen and all(threads and set(threads) == {1} for threads in seen)
        assert set(blas_threads()) == {2}

        class During(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                seen.append(blas_threads())

        seen.clear()
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
        probe = GradientProbe(out=tmp_path, name="probe", plots=False, verbose=False)
        model.compile(optimizer=probe.wrap(keras.optimizers.SGD(0.01)), loss="mse")
        x, y = data.x_train.reshape(-1, 784) / 255.0, np.eye(10)[data.y_train]
        model.fit(x, y, epochs=2, verbose=0, callbacks=[probe, During()])
        assert len(seen) == 2 and all(set(threads) == {1} for threads in seen)
        assert set(blas_threads()) == {2}

        class Fails(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                raise RuntimeError("a callback of the user's fails")

        probe = GradientProbe(out=tmp_path, name=None, plots=False, verbose=False)
        model.compile(optimizer=probe.wrap(keras.optimizers.SGD(0.01)), loss="mse")
        with pytest.raises(RuntimeError):  # fit never calls on_train_end: the run stays open
            model.fit(x, y, epochs=1, verbose=0, callbacks=[probe, Fails()])
        assert set(blas_threads()) == {1}
        model.fit(x, y, epochs=1, verbose=0, callbacks=[probe])  # the next run gives it back
        assert set(blas_threads()) == {2}
