"""A careless or unlucky user and a hostile input: every case ends in one `Error:` line and
exit status 2 (or a clean result), no traceback, and earlier results untouched.

Table-driven by category; the README's promises about bad input, interrupted and
concurrent runs are checked here and in test_signals.py.
"""

import contextlib
import csv
import json
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from processes import Command
from runfolders import write_run
from test_data import make_arrays, write_idx_folder

from mnist_clip.cli import cli
from mnist_clip.nn.model import init_params
from mnist_clip.runs.reader import read_run


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, message):
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output


def npz(tmp_path, **changes):
    arrays = make_arrays()
    arrays.update(changes)
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def toml(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def corrupt_gz_folder(tmp_path):
    folder = tmp_path / "idx"
    write_idx_folder(folder, make_arrays(), gz=True)
    target = folder / "train-images-idx3-ubyte.gz"
    raw = bytearray(target.read_bytes())
    raw[20:60] = b"\x00" * 40  # damage the deflate stream, keep the gzip header
    target.write_bytes(bytes(raw))
    return folder


# (category, make train args from tmp_path, expected message)
TRAIN_CASES = {
    "lr inf": ("value", lambda t: ["--lr", "inf"], "--lr: must be a finite number"),
    "lr nan": ("value", lambda t: ["--lr", "nan"], "--lr: must be a finite number"),
    "lr beyond float32": ("value", lambda t: ["--lr", "1e39"], "outside float32's range"),
    "clip-norm inf": ("value", lambda t: ["--clip-norm", "inf"], "--clip-norm: must be a finite number"),
    "input scale underflows float32": ("value", lambda t: ["--input-scale", "1e-46"], "outside float32's range"),
    "input scale overflows the pixels": ("value", lambda t: ["--input-scale", "1e-37"], "--input-scale: 1e-37 is too small: 255 / 1e-37 overflows"),
    "seed negative": ("value", lambda t: ["--seed", "-1"], "--seed: must be an integer from 0 to 2147483647"),
    "seed too large": ("value", lambda t: ["--seed", str(2**31)], "--seed: must be an integer from 0"),
    "name too long": ("value", lambda t: ["--name", "n" * 300], "--name: 300 bytes long; at most 200"),
    "name with slash": ("value", lambda t: ["--name", "a/b"], "--name: must be a plain folder name"),
    "name dot-dot": ("value", lambda t: ["--name", ".."], "--name: must be a plain folder name"),
    "empty train": ("value", lambda t: ["--train", ""], "--train: is empty; name at least one tensor"),
    "empty freeze": ("value", lambda t: ["--freeze", " , "], "--freeze: is empty; name at least one tensor, e.g. w3,b3 (or leave --freeze out)"),
    "hidden width zero": ("value", lambda t: ["--hidden", "256,0"], "width 0 is not allowed"),
    "hidden too wide": ("value", lambda t: ["--hidden", "5000"], "widths are whole numbers from 1 to 4096"),
    "hidden too deep": ("value", lambda t: ["--hidden", "8x65"], "repeats a layer 65 times"),
    "hidden too deep in parts": ("value", lambda t: ["--hidden", "8x40,8x40"], "at most 64 hidden layers"),
    "hidden unreadable": ("value", lambda t: ["--hidden", "wide"], "--hidden: cannot read 'wide'"),
    "tensor beyond depth": ("value", lambda t: ["--hidden", "64", "--train", "w3"], "--train: unknown tensor 'w3'"),
    "toml table value": ("toml", lambda t: ["--config", toml(t, "[lr]\nvalue = 1\n")], "lr: must be a number (got dict"),
    "toml braces in a string": ("toml", lambda t: ["--config", toml(t, "lr = '{oops}'\n")], "lr: must be a number (got str '{oops}')"),
    "toml key twice": ("toml", lambda t: ["--config", toml(t, "clip-norm = 1\nclip_norm = 2\n")],
                       "'clip-norm' and 'clip_norm' are the same key"),
    "toml hidden as table": ("toml", lambda t: ["--config", toml(t, "[hidden]\na = 1\n")], "hidden: must be a list of layer widths"),
    "toml hidden bad width": ("toml", lambda t: ["--config", toml(t, "hidden = [128, -3]\n")], "width -3 is not allowed"),
    "toml not utf-8": ("toml", lambda t: ["--config", toml(t, "") and (t / "c.toml").write_bytes(b"lr = '\xff'\n") and t / "c.toml"],
                       "cannot read config file"),
    "npz empty train split": ("data", lambda t: ["--data-path", npz(t, x_train=np.zeros((0, 28, 28), np.uint8),
                                                                      y_train=np.zeros(0, np.uint8))], "the train split is empty"),
    "npz empty test split": ("data", lambda t: ["--data-path", npz(t, x_test=np.zeros((0, 28, 28), np.uint8),
                                                                     y_test=np.zeros(0, np.uint8))], "the test split is empty"),
    "complex pixels": ("data", lambda t: ["--data-path", npz(t, x_train=make_arrays()["x_train"].astype(np.complex64))],
                       "pixels have dtype complex64"),
    "boolean pixels": ("data", lambda t: ["--data-path", npz(t, x_train=make_arrays()["x_train"] > 0)], "pixels have dtype bool"),
    "nan pixels": ("data", lambda t: ["--data-path", npz(t, x_test=np.full((5, 28, 28), np.nan))], "NaN or Inf"),
    "corrupt gz idx": ("data", lambda t: ["--data-path", corrupt_gz_folder(t)], "not a valid gzip file"),
    "not an npz": ("data", lambda t: ["--data-path", toml(t, "hello")], "not a readable .npz"),
    "out is a file": ("os", lambda t: ["--out", toml(t, "x")], "is a file"),
    "out below a file": ("os", lambda t: ["--out", toml(t, "x") / "runs"], "is not a folder"),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES), ids=lambda c: f"{TRAIN_CASES[c][0]}: {c}")
def test_train_rejects(tmp_path, case):
    _, make_args, message = TRAIN_CASES[case]
    args = make_args(tmp_path)
    out = ["--out", str(tmp_path / "out")] if "--out" not in args else []
    result = invoke("train", "--dataset", "mnist-5k", "--epochs", "1", *args, *out)
    assert_one_line_error(result, message)
    assert not (tmp_path / "out").exists()


def test_demo_and_sweep_share_the_checks(tmp_path):
    assert_one_line_error(invoke("demo", "--lr", "inf", "--out", tmp_path / "o"), "--lr: must be a finite number")
    assert_one_line_error(invoke("sweep", "--grid", "lr=0.1,0.1", "--out", tmp_path / "o"), "the value 0.1 is given twice")
    assert_one_line_error(invoke("sweep", "--grid", "lr=0.1,0.10", "--out", tmp_path / "o"), "the value 0.1 is given twice")
    assert_one_line_error(invoke("sweep", "--grid", "hidden=128x2,128+128", "--out", tmp_path / "o"), "given twice")
    assert_one_line_error(invoke("sweep", "--grid", "train=", "--out", tmp_path / "o"), "expected KEY=V1,V2")
    assert_one_line_error(invoke("sweep", "--grid", "lr=0.1,inf", "--out", tmp_path / "o"), "--grid lr=inf: must be a finite number")
    assert not (tmp_path / "o").exists()


# Hand-damaged run folders given to plot and compare: (category, damage, message)
def damage(column=None, config=None, summary=None):
    def apply(run: Path):
        if column:
            lines = (run / "metrics.csv").read_text().splitlines()
            header = lines[0].split(",")
            index = header.index(column)
            lines = [",".join(c for i, c in enumerate(line.split(",")) if i != index) for line in lines]
            (run / "metrics.csv").write_text("\n".join(lines) + "\n")
        if config is not None:
            (run / "config.json").write_text(config)
        if summary is not None:
            (run / "summary.json").write_text(summary)
    return apply


DAMAGED = {
    "missing column": (damage(column="w2_after"), "unexpected columns (missing w2_after)"),
    "config.json a list": (damage(config="[1, 2]"), "expected a JSON object, found list"),
    "config.json not json": (damage(config="{oops"), "cannot read run files"),
    "config.json unknown activation": (damage(config='{"activation": "swish"}'),
                                       "config.json: activation: 'swish' is not a value mnist-clip writes (allowed: relu"),
    "summary.json a string": (damage(summary='"done"'), "expected a JSON object, found str"),
    "summary.json without status": (damage(summary='{"steps": 3}'), "no status"),
    "plots is a file": (lambda run: (run / "plots").write_text("x"), "is a file, not a folder"),
}
for key, shown in (("clip_norm", "15"), ("batch_size", "128"), ("input_scale", "50"), ("lr", "0.01")):
    DAMAGED[f"config.json {key} a string"] = (
        lambda run, key=key, shown=shown: (run / "config.json").write_text(
            json.dumps({**json.loads((run / "config.json").read_text()), key: shown})),
        f"config.json: {key}: must be {'an integer' if key == 'batch_size' else 'a number'} (got str '{shown}')")


@pytest.mark.parametrize("case", list(DAMAGED))
@pytest.mark.parametrize("command", ["plot", "compare"])
def test_damaged_run_folders(tmp_path, case, command):
    run = write_run(tmp_path / "run", steps=20)
    make_damage, message = DAMAGED[case]
    make_damage(run)
    if command == "compare" and case == "plots is a file":
        message = None  # compare does not draw into the run's plots/
    result = invoke(command, run, *(["--out", tmp_path / "cmp"] if command == "compare" else []))
    if message is None:
        assert result.exit_code == 0, result.output
    else:
        assert_one_line_error(result, message)


def test_compare_into_dev_null_is_one_line(tmp_path):
    run = write_run(tmp_path / "run", steps=20)
    assert_one_line_error(invoke("compare", run, "--out", "/dev/null"), "/dev/null is not a folder")


@contextlib.contextmanager
def small_file_system(path: Path, size: str, read_only: bool = False):
    """A real tmpfs of `size` mounted at path (the test needs root to mount; it is skipped otherwise)."""
    path.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_read_only_output_folder_is_one_line(tmp_path):
    with small_file_system(tmp_path / "ro", "1m", read_only=True) as folder:
        result = invoke("train", "--dataset", "mnist-5k", "--epochs", "1", "--out", folder / "runs")
        assert_one_line_error(result, "the file system is read-only")


@pytest.mark.parametrize("size", ["600k", "1200k"], ids=["full before training", "full at the end of training"])
def test_a_full_disk_is_one_line_and_leaves_a_readable_folder(tmp_path, size):
    with small_file_system(tmp_path / "full", size) as folder:
        result = invoke("train", "--dataset", "mnist-5k", "--epochs", "2", "--out", folder, "--name", "r", "--no-plots")
        assert_one_line_error(result, "the disk is full")
        shutil.copytree(folder / "r", tmp_path / "copy")
    run = read_run(tmp_path / "copy")
    assert run.status == "unfinished"
    assert invoke("plot", tmp_path / "copy").exit_code == 0


def test_a_failing_overwrite_keeps_the_old_run(tmp_path):
    good = invoke("train", "--dataset", "mnist-5k", "--epochs", "1", "--out", tmp_path, "--name", "r", "--no-plots")
    assert good.exit_code == 0
    before = (tmp_path / "r" / "metrics.csv").read_bytes()
    # the replacement fails mid-run: its data file is damaged after the checks passed
    failing = invoke("train", "--data-path", npz(tmp_path, x_train=np.full((12, 28, 28), 300.0)), "--overwrite",
                     "--out", tmp_path, "--name", "r")
    assert_one_line_error(failing, "pixel values span")
    with pytest.MonkeyPatch.context() as patch:
        import mnist_clip.experiment as experiment

        def full_disk(*args, **kwargs):
            raise OSError(28, "No space left on device", str(tmp_path / "x"))

        patch.setattr(experiment.RunWriter, "append_steps", full_disk)
        failing = invoke("train", "--dataset", "mnist-5k", "--epochs", "1", "--overwrite", "--out", tmp_path, "--name", "r")
    assert_one_line_error(failing, "the disk is full")
    assert (tmp_path / "r" / "metrics.csv").read_bytes() == before
    assert read_run(tmp_path / "r").status == "completed"


def test_overwrite_refuses_a_sweep_folder(tmp_path):
    sweep = tmp_path / "s"
    write_run(sweep, steps=5)
    (sweep / "sweep.json").write_text("{}")
    result = invoke("train", "--out", tmp_path, "--name", "s", "--overwrite")
    assert_one_line_error(result, "is not a run folder")
    assert (sweep / "sweep.json").is_file()


def run_in_parallel(commands):
    threads = [threading.Thread(target=c.finish) for c in commands]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [c.proc.returncode for c in commands]


def test_two_runs_of_one_name_at_once_one_wins_the_other_says_so(tmp_path):
    commands = [Command("train", "--dataset", "mnist-5k", "--epochs", "1", "--no-plots", "--out", str(tmp_path),
                        "--name", "r", "--seed", str(seed)) for seed in (1, 2)]
    codes = run_in_parallel(commands)
    assert sorted(codes) == [0, 2], [c.output() for c in commands]
    loser = commands[codes.index(2)]
    assert "already exists" in loser.output() and "Traceback" not in loser.output()
    assert read_run(tmp_path / "r").status == "completed"


def test_two_overlapping_overwrites_leave_one_whole_run(tmp_path):
    assert invoke("train", "--dataset", "mnist-5k", "--epochs", "1", "--no-plots", "--out", tmp_path, "--name", "r").exit_code == 0
    commands = [Command("train", "--dataset", "mnist-5k", "--epochs", "2", "--no-plots", "--overwrite", "--out",
                        str(tmp_path), "--name", "r", "--seed", str(seed)) for seed in (7, 8)]
    codes = run_in_parallel(commands)
    assert all(code in (0, 2) for code in codes) and 0 in codes, [c.output() for c in commands]
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["seed"] in (7, 8) and config["epochs"] == 2
    initial = np.load(tmp_path / "r" / "params_init.npz")
    np.testing.assert_array_equal(initial["w1"], init_params(config["seed"])["w1"].numpy())  # files of one run
    assert read_run(tmp_path / "r").steps == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no temporary sibling left


def test_a_sweep_of_the_same_name_is_refused_while_one_runs_and_resuming_checks_the_options(tmp_path):
    first = Command("sweep", "--dataset", "mnist-5k", "--epochs", "2", "--grid", "lr=0.01,0.02,0.03", "--jobs", "1",
                    "--out", str(tmp_path), "--name", "s")
    first.wait_for("3 cells:")
    second = invoke("sweep", "--dataset", "mnist-5k", "--epochs", "2", "--grid", "lr=0.01,0.02,0.03", "--out", tmp_path,
                    "--name", "s")
    assert_one_line_error(second, "is being run by another mnist-clip process")
    assert first.finish() == 0, first.output()
    changed = invoke("sweep", "--dataset", "mnist-5k", "--epochs", "3", "--grid", "lr=0.01,0.02,0.03", "--out", tmp_path,
                     "--name", "s")
    assert_one_line_error(changed, "was run with other options (epochs 2 -> 3)")
    assert len(list((tmp_path / "s" / "cells").iterdir())) == 3


def test_a_sweep_over_data_paths_with_slashes_and_over_clip(tmp_path):
    path = npz(tmp_path, x_train=make_arrays(n_train=40)["x_train"], y_train=make_arrays(n_train=40)["y_train"])
    result = invoke("sweep", "--epochs", "1", "--grid", f"data_path={path}", "--grid", "clip=none,value",
                    "--out", tmp_path, "--name", "s", "--jobs", "1")
    assert result.exit_code == 0, result.output
    cells = sorted(p.name for p in (tmp_path / "s" / "cells").iterdir())
    assert len(cells) == 2 and all("/" not in c and "%2F" in c for c in cells)
    with open(tmp_path / "s" / "sweep.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["clip"] for row in rows] == ["none", "value"]  # the grid's values, not labels
    assert [row["data_path"] for row in rows] == [str(path)] * 2
    assert all(row["status"] == "completed" for row in rows)


def test_an_empty_config_file_means_the_defaults(tmp_path):
    from mnist_clip.cli import config_from_options, train
    from mnist_clip.config import Config

    empty = tmp_path / "empty.toml"
    empty.write_text("")
    for given in ("/dev/null", str(empty)):
        with train.make_context("train", ["--config", given]) as ctx:
            assert config_from_options(ctx, ctx.params) == Config()
    assert_one_line_error(invoke("train", "--config", "/dev/null", "--epochs", "0", "--out", tmp_path / "o"),
                          "--epochs: must be an integer >= 1")


def test_a_sweep_refused_for_a_missing_data_file_leaves_no_folder(tmp_path):
    for jobs in ("1", "2"):
        result = invoke("sweep", "--epochs", "1", "--grid", f"data_path={tmp_path / 'none.npz'}", "--out", tmp_path / "o",
                        "--jobs", jobs)
        assert_one_line_error(result, f"data path not found: {tmp_path / 'none.npz'}")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("args, message", [
    (["sweep", "--seeds", "100000000", "--grid", "lr=0.01"],
     "--seeds: 100,000,000 runs (100000000 seeds); at most 10,000 runs"),
    (["sweep", "--seeds", "400", "--grid", "lr=0.01,0.02,0.03,0.04,0.05,0.06,0.07,0.08,0.09,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1,2,3,4,5,6,7,8"],
     "--seeds: 10,400 runs (400 seeds x 26); at most 10,000 runs"),
    (["sweep", "--grid", "lr=" + ",".join(f"0.{i:03d}1" for i in range(1, 201)), "--grid",
      "batch_size=" + ",".join(str(i) for i in range(1, 61))],
     "--grid: 12,000 runs (lr (200) x batch_size (60)); at most 10,000 runs"),
    (["demo", "--seeds", "5001"], "--seeds: 10,002 runs (5001 seeds x 2); at most 10,000 runs"),
])
def test_a_plan_beyond_reason_is_refused_before_anything_exists(tmp_path, args, message):
    from mnist_clip.plans.runner import MAX_RUNS

    assert MAX_RUNS == 10_000
    assert_one_line_error(invoke(*args, "--out", tmp_path / "o"), message)
    assert not (tmp_path / "o").exists()


def test_the_largest_plan_allowed_is_planned_quickly():
    from mnist_clip.config import Config
    from mnist_clip.plans.grid import make_cells, parse_grid
    from mnist_clip.plans.runner import MAX_RUNS

    cells = make_cells(Config(), parse_grid(["lr=0.01,0.02"]), seeds=MAX_RUNS // 2)
    assert len(cells) == MAX_RUNS and cells[-1].config.seed == Config().seed + MAX_RUNS // 2 - 1


@pytest.mark.parametrize("args, line", [
    (["--clip-norm", "none"], "Error: --clip-norm: 'none' is not a valid float; to train without clipping give --clip none"),
    (["--hidden", "256x"], "Error: --hidden: cannot read '256x'; give widths like 256,128 or 128x10 (ten layers of 128), or none"),
    (["--train", "w3,w9"], "Error: --train: unknown tensor 'w9'; allowed: w1, b1, w2, b2, w3, b3 (this net has 3 weight layers)"),
    (["--clip-norm", "0"], "Error: --clip-norm: must be > 0 for --clip global_norm (got 0.0); use --clip none to train "
                           "without clipping"),
    (["--train", "w1", "--freeze", "w2"], "Error: --freeze: give either --train or --freeze, not both"),
    (["--lr", "fast"], "Error: --lr: 'fast' is not a valid float"),
    (["--clip", "sometimes"], "Error: --clip: 'sometimes' is not one of"),
])
def test_command_line_errors_name_the_option_as_typed(tmp_path, args, line):
    result = invoke("train", *args, "--out", tmp_path / "o")
    assert_one_line_error(result, line)
    assert result.stderr.startswith(line)
    assert "_" not in result.stderr.split(":")[1]  # --clip-norm, never clip_norm


def test_config_file_errors_name_the_file_and_its_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("clip-norm = 0\n")
    result = invoke("train", "--config", path, "--out", tmp_path / "o")
    assert_one_line_error(result, f"Error: {path}: clip_norm: must be > 0 for clip='global_norm' (got 0.0); use "
                                  "clip='none' to train without clipping")
    # the option typed wins and is named as typed, even with a config file
    assert_one_line_error(invoke("train", "--config", path, "--clip-norm", "-2", "--out", tmp_path / "o"),
                          "Error: --clip-norm: must be > 0")
    path.write_text("hidden = '256x'\n")
    assert_one_line_error(invoke("train", "--config", path, "--out", tmp_path / "o"),
                          f"Error: {path}: hidden: cannot read '256x'")
