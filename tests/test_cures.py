"""`cures`: each cure's run differs from base in what it claims and nothing else, cures that do
not apply say why, an interrupted run of cures resumes to the same files, and bad input is one line."""

import csv
import json
import signal

import numpy as np
import pytest
from click.testing import CliRunner

import mnist_clip as mc
from conftest import first_digits
from mnist_clip.cli import cli
from mnist_clip.config import Config
from mnist_clip.plans.cures import cures_text, plan_cures
from mnist_clip.plans.cure_table import BY_NAME, CURE_NAMES, apply_cure, resolved_changes
from mnist_clip.errors import InputError, render
from processes import Command

DERIVED = {"trainable"}  # follows from the net: a normalised layer has gamma and beta instead of a bias


def read_csv(path):
    with open(path) as file:
        return list(csv.DictReader(file))


def test_each_cure_changes_what_it_claims_and_nothing_else(tmp_path, mnist_5k, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # the notes keep to the width of the terminal, if there is one
    setup = dict(hidden=(32, 32), clip="none", dirty_fraction=0.02, epochs=1)
    result = mc.cures(out=tmp_path, name="c", progress="quiet", data=first_digits(mnist_5k, 256, 64), **setup)
    assert result.exit_code == 0 and result.skipped == []
    folder = tmp_path / "c"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*CURE_NAMES, "cures.csv", "cures.json", "cures.png"])
    base_config = json.loads((folder / "base" / "config.json").read_text())
    base_init = np.load(folder / "base" / "params_init.npz")
    base_dirty = np.load(folder / "base" / "dirty_examples.npy")
    setup_config = Config(**setup)
    for cure in CURE_NAMES:
        config = json.loads((folder / cure / "config.json").read_text())
        claimed = {key: list(value) if isinstance(value, tuple) else value
                   for key, value in resolved_changes(BY_NAME[cure], setup_config).items()}
        differs = {key for key in config if key not in DERIVED and config[key] != base_config[key]}
        assert differs == {key for key, value in claimed.items() if value != base_config[key]}, cure
        assert all(config[key] == value for key, value in claimed.items()), cure
        initial = np.load(folder / cure / "params_init.npz")
        for name in ("w1", "w2", "w3"):  # the same draw of the same seed, unless the cure is an init
            same = np.array_equal(initial[name], base_init[name])
            assert same == (cure not in ("glorot", "he_relu")), (cure, name)
        dirty = folder / cure / "dirty_examples.npy"
        assert (not dirty.exists()) if cure == "clean_data" else np.array_equal(np.load(dirty), base_dirty)
    rows = {row["cure"]: row for row in read_csv(folder / "cures.csv")}
    assert sorted(rows) == sorted(CURE_NAMES)
    for cure, row in rows.items():
        epochs = read_csv(folder / cure / "epochs.csv")
        assert np.isclose(float(row["test_accuracy"]), float(epochs[-1]["test_accuracy"]))
        assert row["status"] == json.loads((folder / cure / "summary.json").read_text())["status"]
    assert float(rows["lower_lr"]["test_accuracy"]) >= 0 and rows["clipping"]["changes"] == "clip global_norm, clip_norm 15"
    assert (folder / "cures.png").stat().st_size > 20_000
    wide = cures_text(result.rows, width=250)  # a table that fits names each cure's changes in its row
    assert any(line.startswith("clean_data ") and "dirty_fraction 0" in line for line in wide)
    assert all(len(line) <= 100 for note in result.notes for line in note.splitlines())  # $COLUMNS
    assert any(line.startswith("clean_data ") for line in result.notes)
    assert set(result.runs) == set(CURE_NAMES)


def test_cures_that_do_not_apply_are_skipped_with_why():
    def skipped(**settings):
        return dict(plan_cures(Config(**settings))[1])

    reference = skipped()
    assert sorted(reference) == ["clean_data", "clipping", "residual"]
    assert reference["clean_data"] == "it would not change the setup: dirty_fraction is 0 already"
    assert reference["clipping"] == "it is for a setup with clip none; this one has clip global_norm"
    assert render(reference["residual"]).startswith("the setup's config refuses it: residual: no hidden layer of this "
                                                    "net (784-256-128-10) has equal input and output widths")
    assert render(skipped(momentum=0.9)["adam"], "cli").startswith(
        "the setup's config refuses it: --momentum: an option of sgd and rmsprop, not of --optimizer adam")
    assert skipped(init="he", optimizer="adam", hidden=(64, 64))["he_relu"] == \
        "it would not change the setup: init is he already, activation is relu already"
    cells, _ = plan_cures(Config(clip="none", lr=0.05), ["lower_lr"], seeds=2)
    assert [(c.name, c.config.lr, c.config.seed) for c in cells] == [
        ("base-seed1234", 0.05, 1234), ("lower_lr-seed1234", 0.005, 1234),
        ("base-seed1235", 0.05, 1235), ("lower_lr-seed1235", 0.005, 1235)]


def test_an_interrupted_run_of_cures_resumes_to_the_same_files(tmp_path, mnist_5k):
    data = first_digits(mnist_5k, 128, 64)
    path = tmp_path / "digits.npz"
    np.savez(path, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test)
    # the runs go seed by seed, base then clipping: the signal lands while clipping-seed1234 compiles its
    # own program, and that run stops after its first epoch, cut short
    args = ["--data-path", str(path), "--epochs", "3", "--batch-size", "8", "--clip", "none", "--cure", "clipping",
            "--seeds", "2", "--jobs", "1", "--name", "c"]
    stopped = Command("cures", *args, "--out", str(tmp_path / "a"))
    stopped.wait_for("[1/4]")
    stopped.signal(signal.SIGINT)
    assert stopped.finish() == 130, stopped.output()
    assert "run the same command with --name c to resume" in stopped.output() and "Traceback" not in stopped.output()
    resumed = CliRunner().invoke(cli, ["cures", *args, "--out", str(tmp_path / "a")])
    assert resumed.exit_code == 0, resumed.output
    assert "1 of 4 runs finished earlier; running the other 3" in resumed.output
    whole = CliRunner().invoke(cli, ["cures", *args, "--out", str(tmp_path / "b")])
    assert whole.exit_code == 0, whole.output
    a, b = tmp_path / "a" / "c", tmp_path / "b" / "c"
    names = sorted(p.name for p in b.iterdir())
    assert sorted(p.name for p in a.iterdir()) == names and len(names) == 7
    for name in ("cures.csv", "cures.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    timing = {"wall_seconds", "train_seconds", "ms_per_step", "ms_per_step_includes_compiling"}
    for run in (name for name in names if (b / name).is_dir()):
        for name in ("config.json", "metrics.csv"):
            assert (a / run / name).read_bytes() == (b / run / name).read_bytes(), (run, name)
        for name in ("params_init.npz", "params_final.npz"):
            first, second = np.load(a / run / name), np.load(b / run / name)
            assert all(np.array_equal(first[key], second[key]) for key in second.files)
        summaries = [{k: v for k, v in json.loads((f / run / "summary.json").read_text()).items() if k not in timing}
                     for f in (a, b)]
        assert summaries[0] == summaries[1]
        epochs = [[{k: v for k, v in row.items() if k != "seconds"} for row in read_csv(f / run / "epochs.csv")]
                  for f in (a, b)]
        assert epochs[0] == epochs[1]


@pytest.mark.parametrize("args, message", [
    (["--cure", "lowr_lr"], "--cure: unknown cure 'lowr_lr'; did you mean 'lower_lr'? known: base, lower_lr"),
    (["--seeds", "0"], "--seeds: must be a whole number >= 1 (got 0)"),
    (["--seeds", "2000"], "--seeds: 16,000 runs (2000 seeds x 8); at most 10,000 runs are planned at once"),
    (["--lr", "-1"], "--lr: must be > 0 (got -1.0)"),
    (["--jobs", "0"], "--jobs: 0 is not in the range x>=1"),
])
def test_bad_cures_input_is_one_line_and_no_folder(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["cures", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.stderr.startswith(f"Error: {message}"), result.output
    assert result.stderr.count("\n") == 1 and not (tmp_path / "o").exists()


def test_a_cures_folder_is_resumed_only_for_its_own_setup(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "cures.json").write_text(json.dumps({"base": Config(epochs=3).to_dict(), "seeds": 1}))
    result = CliRunner().invoke(cli, ["cures", "--epochs", "2", "--out", str(tmp_path), "--name", "c"])
    assert result.exit_code == 2 and "was run with other options (epochs 3 -> 2); resuming would mix incomparable runs" in result.stderr
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_text("keep")
    result = CliRunner().invoke(cli, ["cures", "--epochs", "2", "--out", str(tmp_path), "--name", "d"])
    assert result.exit_code == 2 and "exists and is not a cures folder" in result.stderr
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["mine.txt"]
    with pytest.raises(InputError, match="cure: must be a cure's name such as 'lower_lr', a list of them, or None \\(got list \\[3\\]\\)"):
        mc.cures(cure=[3], out=tmp_path)


def test_adam_replaces_the_optimizer_at_its_customary_learning_rate():
    """Adam at Keras's default 0.001, not at the setup's (0.05 for explode, 50 times that)."""
    import keras

    explode = Config(lr=0.05, clip="none")
    changes = resolved_changes(BY_NAME["adam"], explode)
    assert set(changes) == {"optimizer", "lr"} and changes["optimizer"] == "adam"
    assert np.isclose(changes["lr"], float(keras.optimizers.Adam().learning_rate))  # Keras's own default
    cured = apply_cure(BY_NAME["adam"], explode)
    assert cured.optimizer == "adam" and cured.lr == 0.001 and cured.replace(optimizer="sgd", lr=0.05) == explode
    assert "replacing the setup's optimizer and learning rate" in BY_NAME["adam"].words
