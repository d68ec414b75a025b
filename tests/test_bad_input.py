"""Every bad input: exit status 2, one line on stderr naming the problem, no traceback, no run folder."""

import numpy as np
import pytest
from click.testing import CliRunner

from mnist_clip.cli import cli
from test_data import make_arrays, write_idx_folder, write_idx_images, write_idx_labels


def npz(tmp_path, **changes):
    arrays = make_arrays()
    arrays.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del arrays[key]
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


def idx(tmp_path, breakage):
    folder = tmp_path / "idx"
    arrays = make_arrays()
    write_idx_folder(folder, arrays)
    breakage(folder, arrays)
    return str(folder)


def toml(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


CASES = {
    "unknown key": (lambda t: ["--config", toml(t, "epoch = 3\n")], "unknown config key 'epoch'; did you mean 'epochs'?"),
    "wrong type": (lambda t: ["--config", toml(t, "batch-size = '128'\n")], "c.toml: batch_size: must be an integer"),
    "malformed toml": (lambda t: ["--config", toml(t, "lr = 0.1\nclip = \n")], "malformed TOML"),
    "missing config": (lambda t: ["--config", str(t / "nope.toml")], "config file not found"),
    "config is a folder": (lambda t: ["--config", str(t)], "is a directory"),
    "threshold zero": (lambda t: ["--clip-norm", "0"], "--clip-norm: must be > 0 for --clip global_norm"),
    "threshold negative": (lambda t: ["--clip", "value", "--clip-norm", "-1"], "--clip-norm: must be > 0"),
    "lr zero": (lambda t: ["--lr", "0"], "--lr: must be > 0"),
    "lr text": (lambda t: ["--lr", "fast"], "--lr: 'fast' is not a valid float"),
    "epochs zero": (lambda t: ["--epochs", "0"], "--epochs: must be an integer >= 1"),
    "batch size zero": (lambda t: ["--batch-size", "0"], "--batch-size: must be an integer >= 1"),
    "input scale zero": (lambda t: ["--input-scale", "0"], "--input-scale: must be > 0"),
    "unknown clip": (lambda t: ["--clip", "sometimes"], "'sometimes' is not one of"),
    "unknown dataset": (lambda t: ["--dataset", "cifar"], "'cifar' is not one of"),
    "unknown tensor train": (lambda t: ["--train", "w3,w9"], "--train: unknown tensor 'w9'"),
    "unknown tensor freeze": (lambda t: ["--freeze", "x"], "--freeze: unknown tensor 'x'"),
    "missing data path": (lambda t: ["--data-path", str(t / "none.npz")], "data path not found"),
    "npz missing keys": (lambda t: ["--data-path", npz(t, y_test=None)], "missing key(s) y_test"),
    "labels outside 0-9": (lambda t: ["--data-path", npz(t, y_train=np.full(12, 11))], "label 11 is outside 0..9"),
    "images not 28x28": (lambda t: ["--data-path", npz(t, x_test=np.zeros((5, 28, 27)))], "expected (N, 28, 28)"),
    "idx bad magic": (
        lambda t: ["--data-path", idx(t, lambda f, a: write_idx_labels(f / "t10k-labels-idx1-ubyte", a["y_test"], magic=7))],
        "bad magic number",
    ),
    "idx truncated": (
        lambda t: ["--data-path", idx(t, lambda f, a: write_idx_images(f / "train-images-idx3-ubyte", a["x_train"], truncate=1))],
        "truncated",
    ),
    "idx mismatched counts": (
        lambda t: ["--data-path", idx(t, lambda f, a: write_idx_labels(f / "t10k-labels-idx1-ubyte", a["y_test"][:2]))],
        "5 test images but 2 test labels",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_train_rejects_bad_input(tmp_path, case):
    make_args, message = CASES[case]
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["train", *make_args(tmp_path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("command", ["plot", "compare"])
def test_plot_and_compare_reject_a_folder_that_is_not_a_run(tmp_path, command):
    (tmp_path / "notes.txt").write_text("hello")
    result = CliRunner().invoke(cli, [command, str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == f"Error: {tmp_path} is not a run folder (no config.json); give a folder written by `mnist-clip train`\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
