"""The Python API against the CLI, the notebook tour, packaged recipes, and progress output."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import mnist_clip as mc
from mnist_clip.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def test_the_api_and_the_cli_write_the_same_metrics(tmp_path):
    cli_run = CliRunner().invoke(cli, ["train", "--config", "explode_clipped", "--dataset", "mnist-5k", "--epochs", "2",
                                       "--freeze", "w1,b1", "--out", str(tmp_path), "--name", "cli", "--no-plots"])
    assert cli_run.exit_code == 0, cli_run.output
    run = mc.train("explode_clipped", dataset="mnist-5k", epochs=2, freeze=("w1", "b1"), out=tmp_path, name="api",
                   plots=False, progress="quiet")
    assert (tmp_path / "api" / "metrics.csv").read_bytes() == (tmp_path / "cli" / "metrics.csv").read_bytes()
    assert run.summary["status"] == "completed" and run.exit_code == 0
    frame = run.metrics
    assert list(frame.columns)[:7] == ["step", "epoch", "loss", "accuracy", "global_norm_before", "global_norm_after", "clipped"]
    assert len(frame) == 64 and frame["step"].tolist() == list(range(64))
    np.testing.assert_array_equal(frame["w1_before"].to_numpy(), mc.load_run(tmp_path / "cli").run.metrics["w1_before"])
    assert run.config["trainable"] == ["w2", "b2", "w3", "b3"] and run.config["lr"] == 0.05
    assert sorted(run.figures()) == ["flow", "loss", "norms", "ratio", "signals", "updates"]
    assert "api: global_norm 15, completed, 64 steps" in repr(run)


def test_bad_arguments_raise_the_clis_input_error_in_pythons_words(tmp_path):
    with pytest.raises(mc.InputError) as caught:
        mc.train(lr=-1, out=tmp_path)
    assert str(caught.value) == "lr: must be > 0 (got -1.0)" and caught.value.key == "lr"
    cli_run = CliRunner().invoke(cli, ["train", "--lr", "-1", "--out", str(tmp_path)])
    assert cli_run.stderr == "Error: --lr: must be > 0 (got -1.0)\n"  # the same check, named as typed
    with pytest.raises(mc.InputError, match="unknown config key 'epoch'; did you mean 'epochs'"):
        mc.train(epoch=3, out=tmp_path)
    with pytest.raises(mc.InputError, match="train: is empty"):
        mc.train(train=[], out=tmp_path)
    with pytest.raises(mc.InputError, match="config file not found: nope; give a path, or a recipe name: adam_beta1_norm, .*, blog, "):
        mc.train("nope", out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_demo_compare_and_sweep_from_python(tmp_path, mnist_5k):
    # the runs' own pictures are not what this checks (the notebook tour draws a demo's);
    # compare.png is drawn either way
    pair = mc.demo(epochs=1, out=tmp_path, name="d", plots=False, progress="quiet", data=mnist_5k)
    assert [run.name for run in pair.runs] == ["clipped", "unclipped"]
    assert pair.clipped[0].config["clip"] == "global_norm" and pair.unclipped[0].config["clip"] == "none"
    assert list(pair.table["name"]) == ["clipped", "unclipped"] and (tmp_path / "d" / "compare.png").is_file()
    table, figure = mc.compare([pair.clipped[0], tmp_path / "d" / "unclipped"])
    assert list(table["steps"]) == [32, 32] and len(figure.axes) >= 8
    # with one seed, each twin is also its run, as the README's example uses it
    assert pair.clipped.name == "clipped" and pair.unclipped.config["clip"] == "none"
    assert pair.clipped.summary["steps"] == 32 and pair.clipped.path == pair.clipped[0].path
    table, _ = mc.compare([pair.clipped, pair.unclipped])
    assert list(table["name"]) == ["clipped", "unclipped"]
    again = mc.demo(epochs=1, out=tmp_path, name="d", overwrite=True, plots=False, progress="quiet", data=mnist_5k,
                    lr=0.02)
    assert again.runs[0].config["lr"] == 0.02 and sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    grid = {"lr": [0.01, 0.1], "clip_norm": [None, 15]}
    swept = mc.sweep(grid, epochs=1, out=tmp_path, name="s", progress="quiet", data=mnist_5k)
    assert len(swept.table) == 4 and set(swept.table["status"]) <= {"completed", "diverged"}
    assert swept.figure().axes[0].get_xlabel() == "lr"


def test_recipes_are_listed_and_found_by_name_from_any_folder(tmp_path):
    listed = CliRunner().invoke(cli, ["recipes"])
    names = sorted(path.stem for path in (ROOT / "configs").glob("*.toml"))
    # one recipe a line, its description wrapped beneath itself to the terminal's width
    assert [line.split()[0] for line in listed.output.splitlines() if not line.startswith(" ")] == names
    assert max(len(line) for line in listed.output.splitlines()) <= 100
    assert "explode " in listed.output and "blows up" in listed.output
    code = ("import sys; from mnist_clip.recipe_files import resolve_config_file; "
            "print(resolve_config_file('explode').read_text())")
    found = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0 and found.stdout.strip() == (ROOT / "configs" / "explode.toml").read_text().strip()


def test_the_installed_wheel_finds_its_recipes_from_any_folder(tmp_path):
    # built from a copy: a build/ folder left in the tree would mend a package list that misses a subpackage
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "outputs", "site",
                                                                  "__pycache__", ".pytest_cache"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("mnist_clip-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(Path(name).name for name in names if name.startswith("mnist_clip/configs/"))
    assert shipped == sorted(path.name for path in (ROOT / "configs").glob("*.toml"))
    # every module of the source tree, subpackages included (an editable install would hide a missing one)
    modules = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "mnist_clip").rglob("*.py"))
    assert [module for module in modules if module not in names] == []
    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import mnist_clip, sys; from mnist_clip.recipe_files import resolve_config_file, recipes; "
            "assert mnist_clip.__file__.startswith(sys.argv[1]), mnist_clip.__file__; "
            "print(len(recipes())); print(resolve_config_file('explode'))")
    found = subprocess.run([sys.executable, "-c", code, str(site)], cwd=elsewhere, capture_output=True, text=True,
                           timeout=60, env={**os.environ, "PYTHONPATH": str(site)})
    assert found.returncode == 0, found.stderr
    count, path = found.stdout.split()
    assert int(count) == len(shipped) and path == str(site / "mnist_clip" / "configs" / "explode.toml")


def test_no_progress_bar_when_output_is_not_a_terminal(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mnist_clip", "train", "--dataset", "mnist-5k", "--epochs", "2",
                             "--out", str(tmp_path), "--name", "r", "--no-plots"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout + result.stderr and "step/s" not in result.stdout + result.stderr
    assert result.stdout.count("epoch ") == 2
    quiet = CliRunner().invoke(cli, ["train", "--dataset", "mnist-5k", "--epochs", "2", "--out", str(tmp_path),
                                     "--name", "q", "--no-plots", "--quiet"])
    assert quiet.exit_code == 0 and "epoch 1/2" not in quiet.output and "status: completed" in quiet.output


def test_the_notebook_tour_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(ROOT / "examples" / "tour.ipynb", as_version=4)
    assert "EPOCHS = 30" in notebook.cells[1].source
    notebook.cells[1].source = notebook.cells[1].source.replace("EPOCHS = 30", "EPOCHS = 1")
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # norms, the demo's comparison, the stability map
    assert (tmp_path / "outputs" / "tour" / "reference" / "summary.json").is_file()


def test_twins_of_several_seeds_ask_to_be_indexed(tmp_path):
    from mnist_clip.api import RunResult, Twins
    from runfolders import write_run

    runs = Twins(mc.load_run(write_run(tmp_path / f"clipped-seed{seed}", steps=10, seed=seed)) for seed in (1, 2))
    assert [run.name for run in runs] == ["clipped-seed1", "clipped-seed2"] and isinstance(runs[0], RunResult)
    with pytest.raises(AttributeError, match="2 runs, one per seed; pick one, e.g. \\[0\\].summary"):
        runs.summary
    one = Twins(runs[:1])
    assert one.name == "clipped-seed1" and repr(one) == repr(runs[0])


@pytest.mark.parametrize("call, key, message", [
    (lambda: mc.train(config=42), "config", "config: must be a Config, a recipe name"),
    (lambda: mc.train(data=[1, 2, 3]), "data", "data: must be a Dataset"),
    (lambda: mc.train(name=7), "name", "name: must be a folder name or None (got int 7)"),
    (lambda: mc.train(overwrite="yes"), "overwrite", "overwrite: must be True or False"),
    (lambda: mc.compare([42]), "runs", "runs: each run is a RunResult, a Run or a run folder's path (got int 42)"),
    (lambda: mc.compare([]), "runs", "runs: nothing to compare"),
    (lambda: mc.sweep({"lr": 0.1}), "grid", "grid lr: give a list of values such as [0.01, 0.1] (got float 0.1)"),
    (lambda: mc.sweep({}), "grid", "grid: empty; give at least one key"),
    (lambda: mc.sweep({"lr": []}), "grid", "grid lr: no values"),
    (lambda: mc.sweep({"lr": [0.1, -1]}), "grid", "grid lr=-1: must be > 0 (got -1.0)"),
    (lambda: mc.sweep(jobs=0), "jobs", "jobs: must be a whole number >= 1"),
    (lambda: mc.train(learning_rate=0.1), None, "unknown config key 'learning_rate'; did you mean 'lr'?"),
    (lambda: mc.train(clip_norm=0), "clip_norm", "clip_norm: must be > 0 for clip='global_norm' (got 0.0); use "
                                                  "clip='none' to train without clipping"),
    (lambda: mc.demo(clip="none"), "clip", "clip: demo compares a clipping method with none"),
    (lambda: mc.demo(seeds=10**6), "seeds", "seeds: 2,000,000 runs"),
])
def test_python_misuse_raises_input_error_naming_the_key(tmp_path, call, key, message):
    os.chdir(tmp_path)
    with pytest.raises(mc.InputError) as caught:
        call()
    text = str(caught.value)
    assert text.startswith(message) or (key is None and message in text), text
    assert caught.value.key == key
    assert "--" not in text and "\x1e" not in repr(caught.value)  # Python's words, no CLI option, no markers
    assert not (tmp_path / "outputs").exists()


def test_python_errors_say_name_and_overwrite_true(tmp_path, mnist_5k):
    # the default net: its compiled program is shared with the other default runs of the process
    mc.train(epochs=1, out=tmp_path, name="r", plots=False, progress="quiet", data=mnist_5k)
    with pytest.raises(mc.InputError, match=r"already exists; choose another name or add overwrite=True$"):
        mc.train(epochs=1, out=tmp_path, name="r", progress="quiet", data=mnist_5k)
    result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path), "--name", "r"])
    assert result.stderr.endswith("already exists; choose another --name or add --overwrite\n")
