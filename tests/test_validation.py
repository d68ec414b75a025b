"""Validation as a class: every ranged number checked in float32, every file read back checked
for its shape, every public argument checked for its type; each refusal one line, nothing touched."""

import inspect
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import mnist_clip as mc
from conftest import first_digits
from mnist_clip.cli import cli
from mnist_clip.config import CONFIG_KEYS, FIELD_TYPES, OPTIMIZER_KEYS, RANGES, Config
from mnist_clip.plans.cures import plan_cures
from mnist_clip.data import load_path
from mnist_clip.plans.grid import format_setting, make_cells, parse_grid
from runfolders import write_run

F32_TINY = float(np.finfo(np.float32).tiny)  # the smallest normal float32, 1.1754944e-38
F32_MAX = float(np.finfo(np.float32).max)

# Values near every boundary: 0, 1, just inside and outside 1, the edges of float32 (and of
# float64), the non-finite ones; each field also gets its own bounds and their neighbours.
BOUNDARY_VALUES = [0.0, 1.0, 1 - 1e-8, 1 + 1e-8, float(np.nextafter(np.float32(1), np.float32(0))), -1e-8, 5e-324,
                   1e-46, 1e-40, 1.2e-38, 3e38, 1e39, 1.7e308, math.nan, math.inf, -math.inf]


def values_near(field):
    allowed = RANGES[field]
    bounds = [b for b in (allowed.low, allowed.high) if math.isfinite(b)]
    near = [b * (1 + s) for b in bounds for s in (-1e-8, 1e-8)] + bounds
    return list(dict.fromkeys(BOUNDARY_VALUES + near))


def in_float32(value):
    with np.errstate(over="ignore", under="ignore"):
        return np.float32(value)


# The reference, written out here independently of the product's range table: what each field
# may be as given, and as the float32 that training computes with (a positive number must stay
# a normal float32: TensorFlow's kernels flush subnormals to 0).
def positive(value, v32):
    return bool(math.isfinite(value) and value > 0 and np.isfinite(v32) and v32 >= F32_TINY)


def fraction(value, v32):
    return bool(0 <= value < 1 and 0 <= v32 < 1)


def percentage(value, v32):
    return bool(0 <= value <= 100 and 0 <= v32 <= 100)


REFERENCE = {"clip_norm": positive, "lr": positive, "input_scale": positive, "epsilon": positive,
             "recurrent_gain": positive, "dirty_scale": positive, "momentum": fraction, "beta1": fraction,
             "beta2": fraction, "rho": fraction, "dirty_fraction": fraction, "clip_percentile": percentage}
# Fields refused further for what they do with others (255 / input_scale must fit float32; the
# dirty inputs too): accepted implies the reference, not the other way round.
FURTHER_CHECKED = {"input_scale", "dirty_scale"}

# A small net and the settings under which each field is read (the optimizer or model that
# takes it, dirty data for its scale, autoclip for its percentile).
SMALL = dict(hidden=(8,), batch_size=16, epochs=1)


def setting_for(field):
    optimizers = [name for name, keys in OPTIMIZER_KEYS.items() if field in keys]
    if optimizers:
        return {"optimizer": optimizers[0]}
    return {"recurrent_gain": {"model": "rnn"}, "dirty_scale": {"dirty_fraction": 0.25},
            "clip_percentile": {"clip": "autoclip"}}.get(field, {})


def test_every_ranged_field_is_in_the_reference():
    assert set(RANGES) == set(REFERENCE)


def test_boundary_values_are_refused_in_one_line_or_train_with_every_committed_array_finite(tmp_path, mnist_5k):
    data = first_digits(mnist_5k, 32, 16)  # two steps of 16
    trained = {}
    for field in RANGES:
        for value in values_near(field):
            for given in (value, in_float32(value)):  # a float and a NumPy float32
                v32 = in_float32(given)
                try:
                    config = mc.make_config(Config(**SMALL, **setting_for(field)), {field: given})
                except mc.InputError as err:
                    text = str(err)
                    assert "\n" not in text and err.key == field and text.startswith(field), text
                    assert field in FURTHER_CHECKED or not REFERENCE[field](float(given), v32), f"{field}={given!r}: {text}"
                    continue
                assert REFERENCE[field](float(given), v32), f"{field}={given!r} (float32 {v32}) was accepted"
                assert np.float32(getattr(config, field)) == v32
                trained.setdefault((field, float(v32)), config)
    assert len(trained) >= 2 * len(RANGES)
    for (field, value), config in trained.items():
        run = mc.train(config, out=tmp_path, plots=False, progress="quiet", data=data)
        assert run.summary["status"] in ("completed", "diverged"), (field, value)
        with np.load(run.path / "params_final.npz") as final:
            bad = [name for name in final.files if not np.isfinite(final[name]).all()]
        assert not bad, f"{field}={value}: params_final.npz holds NaN/Inf in {bad}"


@pytest.mark.parametrize("args, message", [
    (["--optimizer", "adam", "--beta2", "0.99999999"],
     "--beta2 0.99999999 is 1.0 in float32, where training runs; it must be below 1 (at most 0.99999994)"),
    (["--optimizer", "adam", "--beta1", "0.99999999"],
     "--beta1 0.99999999 is 1.0 in float32, where training runs; it must be below 1 (at most 0.99999994)"),
    (["--momentum", "0.999999999"],
     "--momentum 0.999999999 is 1.0 in float32, where training runs; it must be below 1 (at most 0.99999994)"),
    (["--optimizer", "adam", "--epsilon", "1e-40"],
     "--epsilon: 1e-40 is outside float32's range (about 1.2e-38 to 3.4e38); in float32, where training runs, it is "
     "a subnormal number that TensorFlow's kernels flush to 0"),
    (["--lr", "1e-46"], "--lr: 1e-46 is outside float32's range (about 1.2e-38 to 3.4e38); it is 0.0 in float32, "
                        "where training runs"),
    (["--clip-norm", "1e39"], "--clip-norm: 1e+39 is outside float32's range (about 1.2e-38 to 3.4e38) for --clip "
                              "global_norm; it is inf in float32, where training runs; use --clip none to train "
                              "without clipping"),
])
def test_the_command_line_says_what_float32_makes_of_a_value(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["train", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.stderr == f"Error: {message}\n", result.output
    assert not (tmp_path / "o").exists()


# --- files read back -----------------------------------------------------------------------

WRONG_TYPES = {"list": [], "string": "done", "number": 3, "null": None, "boolean": True}
NESTED = {
    "config.json": [{"hidden": "128"}, {"hidden": [1.5]}, {"lr": None}, {"lr": "0.1"}, {"dataset_used": []},
                    {"dataset_used": {"train_size": "4000"}}, {"trainable": "w1"}, {"trainable": [1]},
                    {"clip": "sometimes"}, {"model": 3}, {"shuffle": "yes"}],
    "summary.json": [{"status": 3}, {"status": None}, {"steps": "3"}, {"diagnosis": []}, {"diagnosis": {"cause": 5}},
                     {"diagnosis": {"text": "x"}}, {"first_nonfinite_step": "3"}, {"first_nonfinite_step": 2.5},
                     {"clipped_steps_per_tensor": {"w1": "2"}}, {"test_accuracy": []}, {"clipping_never_acted": 1}],
    "plan": [{"base": []}, {"base": {"lr": "fast"}}, {"base": {"hidden": "8"}}, {"seeds": "2"}, {"seeds": 0},
             {"seeds": True}, {"grid": {}}, {"grid": [["lr"]]}, {"cures": "base"}, {"cures": [1]}],
}


def damaged_versions(kind, valid):
    """(label, text) for each wrong type of the whole file and each nested wrong key."""
    for label, value in WRONG_TYPES.items():
        yield label, json.dumps(value)
    for change in NESTED[kind]:
        yield json.dumps(change), json.dumps({**valid, **change})
    if kind == "summary.json":
        yield "no status", json.dumps({key: value for key, value in valid.items() if key != "status"})


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_refused(call, folder, *names):
    before = snapshot(folder)
    with pytest.raises(mc.InputError) as caught:
        call()
    text = str(caught.value)
    assert "\n" not in text and any(name in text for name in names), text
    assert snapshot(folder) == before
    return text


@pytest.mark.parametrize("file", ["config.json", "summary.json"])
def test_a_run_file_of_the_wrong_shape_is_one_line_and_nothing_is_written(tmp_path, file):
    run = write_run(tmp_path / "run", steps=6, steps_per_epoch=3)
    valid = json.loads((run / file).read_text())
    for label, text in damaged_versions(file, valid):
        (run / file).write_text(text)
        message = assert_refused(lambda: mc.load_run(run), tmp_path, file)
        assert "changed by hand?" in message, (label, message)
    for command in (["plot", str(run)], ["compare", str(run), "--out", str(tmp_path / "cmp")]):
        (run / file).write_text("[]")
        before = snapshot(tmp_path)
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert f"{file}: expected a JSON object, found list" in result.stderr and snapshot(tmp_path) == before


@pytest.mark.parametrize("file", ["metrics.csv", "epochs.csv"])
def test_a_table_changed_by_hand_is_one_line(tmp_path, file):
    run = write_run(tmp_path / "run", steps=6, steps_per_epoch=3)
    lines = (run / file).read_text().splitlines(keepends=True)
    cases = {"a line of text in the middle": lines[:2] + ["hello\n"] + lines[2:],
             "a short line in the middle": lines[:2] + ["1,2\n"] + lines[2:],
             "a step that is not whole": [lines[0], "0.5" + lines[1][lines[1].index(","):]] + lines[2:],
             "a step that is NaN": [lines[0], "nan" + lines[1][lines[1].index(","):]] + lines[2:],
             "no header": []}
    for label, text in cases.items():
        (run / file).write_text("".join(text))
        message = assert_refused(lambda: mc.load_run(run), tmp_path, file)
        assert "metrics.csv" in message or "epochs.csv" in message, (label, message)


SWEEP_BASE = Config(dataset="mnist-5k", epochs=1, hidden=(8,), batch_size=16)
GRID = ["lr=0.01,0.02"]


def sweep_folder(out: Path) -> Path:
    """A finished sweep folder as the product records it: sweep.json and its cells' runs."""
    grid = parse_grid(GRID)
    folder = out / "s"
    for cell in make_cells(SWEEP_BASE, grid):
        write_run(folder / "cells" / cell.folder_name, steps=4, steps_per_epoch=2)
    record = {"grid": [[k, [format_setting(v) for v in vs]] for k, vs in grid], "base": SWEEP_BASE.to_dict(), "seeds": 1}
    (folder / "sweep.json").write_text(json.dumps(record))
    return folder


CURES_BASE = Config(dataset="mnist-5k", epochs=1, hidden=(8,), batch_size=16, clip="none", lr=0.05)


def cures_folder(out: Path) -> Path:
    folder = out / "c"
    cells, _ = plan_cures(CURES_BASE, ["lower_lr"])
    for cell in cells:
        write_run(folder / cell.folder_name, steps=4, steps_per_epoch=2)
    record = {"base": CURES_BASE.to_dict(), "seeds": 1, "cures": [cell.cure for cell in cells]}
    (folder / "cures.json").write_text(json.dumps(record))
    return folder


def resume_sweep(out, data):
    return lambda: mc.sweep({"lr": [0.01, 0.02]}, SWEEP_BASE, out=out, name="s", progress="quiet", data=data)


def resume_cures(out, data):
    return lambda: mc.cures(CURES_BASE, cure="lower_lr", out=out, name="c", progress="quiet", data=data)


@pytest.mark.parametrize("kind", ["sweep", "cures"])
def test_a_plan_file_of_the_wrong_shape_is_refused_on_resume_and_nothing_is_written(tmp_path, mnist_5k, kind):
    data = first_digits(mnist_5k, 32, 16)
    folder = sweep_folder(tmp_path) if kind == "sweep" else cures_folder(tmp_path)
    resume = resume_sweep(tmp_path, data) if kind == "sweep" else resume_cures(tmp_path, data)
    record = folder / f"{kind}.json"
    valid = record.read_text()
    for label, text in damaged_versions("plan", json.loads(valid)):
        record.write_text(text)
        assert_refused(resume, tmp_path, f"{kind}.json")
    record.write_text(valid)
    # a run of the plan whose file was changed by hand: refused before any run trains
    run = next(p for p in (folder / "cells" if kind == "sweep" else folder).iterdir() if p.is_dir())
    for file in ("config.json", "summary.json"):
        valid_run_file = (run / file).read_text()
        for label, text in damaged_versions(file, json.loads(valid_run_file)):
            (run / file).write_text(text)
            assert_refused(resume, tmp_path, file)
        (run / file).write_text(valid_run_file)
    assert resume().exit_code == 0  # the same folder, whole again, resumes: every run finished, none trains


@pytest.mark.parametrize("kind, text, message", [
    ("sweep", "[1, 2]", "sweep.json: expected a JSON object, found list"),
    ("sweep", '{"seeds": "2"}', "sweep.json: seeds: must be a whole number >= 1, found string \"2\""),
    ("cures", "null", "cures.json: expected a JSON object, found null"),
    ("cures", '{"base": {"lr": "fast"}}', "cures.json: base.lr: must be a number (got str 'fast')"),
])
def test_the_command_line_refuses_a_plan_file_of_the_wrong_shape(tmp_path, kind, text, message):
    folder = sweep_folder(tmp_path) if kind == "sweep" else cures_folder(tmp_path)
    (folder / f"{kind}.json").write_text(text)
    before = snapshot(tmp_path)
    common = ["--dataset", "mnist-5k", "--epochs", "1", "--hidden", "8", "--batch-size", "16", "--out", str(tmp_path)]
    if kind == "sweep":
        args = ["sweep", *common, "--name", "s", "--grid", GRID[0]]
    else:
        args = ["cures", *common, "--name", "c", "--clip", "none", "--lr", "0.05", "--cure", "lower_lr"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert message in result.stderr and "Traceback" not in result.output, result.stderr
    assert snapshot(tmp_path) == before


TOML_WRONG = {"string": "'x'", "number": "3", "float": "2.5", "boolean": "true", "array": "[1, 2]",
              "array of strings": "['a']", "table": "{ a = 1 }", "empty array": "[]"}
TOML_ACCEPTS = {"int": {"number"}, "float": {"number", "float"}, "bool": {"boolean"}, "str": {"string"},
                "str | None": {"string"}, "tuple[int, ...]": {"string", "array", "empty array"},
                "tuple[str, ...]": {"string", "array of strings"}}


def test_a_recipe_value_of_the_wrong_type_is_one_line(tmp_path):
    path = tmp_path / "r.toml"
    refused = 0
    for key in CONFIG_KEYS:
        for kind, text in TOML_WRONG.items():
            if kind in TOML_ACCEPTS[FIELD_TYPES[key]]:
                continue
            path.write_text(f"{key} = {text}\n")
            with pytest.raises(mc.InputError) as caught:
                mc.make_config(path)
            message = str(caught.value)
            assert message.startswith(f"{path}: {key}: ") and "\n" not in message, message
            refused += 1
    assert refused > 5 * len(CONFIG_KEYS)
    path.write_text("lr = [0.1]\n")
    result = CliRunner().invoke(cli, ["train", "--config", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.stderr == f"Error: {path}: lr: must be a number (got list [0.1])\n"


@pytest.mark.parametrize("key, value, message", [
    ("x_train", np.zeros(()), "images have shape ()"),
    ("x_train", np.array(["a"] * 12 * 784).reshape(12, 28, 28), "pixels have dtype <U1"),
    ("x_train", np.zeros((12, 28, 28, 1)), "images have shape (12, 28, 28, 1)"),
    ("y_train", np.zeros((12, 1), np.uint8), "labels have shape (12, 1)"),
    ("y_train", np.zeros(12), "labels have dtype float64"),
    ("y_test", np.array([None] * 5, dtype=object), "not a readable .npz"),
    ("x_test", np.zeros((5, 28, 28), dtype=[("a", "u1")]), "pixels have dtype"),
])
def test_a_data_file_of_the_wrong_shape_is_one_line(tmp_path, key, value, message):
    from test_data import make_arrays

    arrays = {**make_arrays(), key: value}
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(mc.InputError) as caught:
        load_path(tmp_path / "d.npz")
    assert message in str(caught.value) and "\n" not in str(caught.value)


# --- the public functions' arguments -------------------------------------------------------

KINDS = {"none": None, "bool": True, "int": 3, "float": 2.5, "str": "x", "bytes": b"x", "path": Path("x"),
         "list of ints": [1], "list of strings": ["x"], "dict": {"a": 1}, "object": object()}
# What each argument accepts, by kind (independent of the annotations the product reads).
ACCEPTS = {
    "config": {"none", "str", "path"},
    "out": {"str", "path"},
    "name": {"none", "str"},
    "overwrite": {"bool"}, "plots": {"bool"}, "tensorboard": {"bool"},
    "print_every": {"int"}, "seeds": {"int"}, "jobs": {"int"},
    "progress": {"str"}, "metric": {"str"},
    "data": {"none"},
    "cure": {"none", "str", "list of strings", "dict"},  # a dict iterates its keys
    "grid": {"none", "str", "list of strings", "dict"},
    "runs": {"str", "path", "list of ints", "list of strings", "dict"},  # items are checked one by one
    "path": {"str", "path"},
    "overrides": {"none", "dict"},
}
EXTRA = {("compare", "out"): {"none"}}
PUBLIC = {"train": mc.train, "demo": mc.demo, "compare": mc.compare, "sweep": mc.sweep, "cures": mc.cures,
          "load_run": mc.load_run, "make_config": mc.make_config}


def test_the_exports_are_the_functions_checked_here():
    functions = {name for name in mc.__all__ if inspect.isfunction(getattr(mc, name))}
    assert functions == set(PUBLIC) | {"recipes"}


def test_every_public_argument_of_a_wrong_type_is_one_line(tmp_path):
    os.chdir(tmp_path)
    count = 0
    for function_name, function in PUBLIC.items():
        for argument in inspect.signature(function).parameters.values():
            if argument.kind is inspect.Parameter.VAR_KEYWORD:
                continue
            accepted = ACCEPTS[argument.name] | EXTRA.get((function_name, argument.name), set())
            for kind, value in KINDS.items():
                if kind in accepted:
                    continue
                given = {"runs": ["r"]} if function_name == "compare" and argument.name != "runs" else {}
                if function_name == "load_run" and argument.name != "path":
                    given = {"path": "r"}
                with pytest.raises(mc.InputError) as caught:
                    function(**given, **{argument.name: value})
                message = str(caught.value)
                assert caught.value.key == argument.name and "\n" not in message, (function_name, argument.name, message)
                assert message.startswith(f"{argument.name}: "), message
                count += 1
    assert count > 100 and not any(tmp_path.iterdir())
    with pytest.raises(mc.InputError, match=r"^recipes\(\): too many positional arguments$"):
        mc.recipes(3)
    with pytest.raises(mc.InputError, match=r"^load_run\(\): missing a required argument: 'path'$"):
        mc.load_run()


def test_cures_with_a_number_for_its_cure_is_the_clis_input_error(tmp_path):
    with pytest.raises(mc.InputError) as caught:
        mc.cures(cure=5, out=tmp_path)
    assert str(caught.value) == "cure: must be a cure's name such as 'lower_lr', a list of them, or None (got int 5)"
    assert not any(tmp_path.iterdir())


CONFIG_ACCEPTS = {"int": {"int"}, "float": {"int", "float"}, "bool": {"bool"}, "str": {"str"},
                  "str | None": {"none", "str", "path"}, "tuple[int, ...]": {"str", "list of ints"},
                  "tuple[str, ...]": {"str", "list of strings"}}


def test_config_refuses_every_field_of_a_wrong_type_and_unknown_keys():
    count = 0
    for key in CONFIG_KEYS:
        accepted = CONFIG_ACCEPTS[FIELD_TYPES[key]] | ({"none"} if key in ("hidden", "activation") else set())
        for kind, value in KINDS.items():
            if kind in accepted:
                continue
            with pytest.raises(mc.InputError) as caught:
                Config(**{key: value})
            assert caught.value.key == key and str(caught.value).startswith(f"{key}: must be "), str(caught.value)
            count += 1
    assert count > 5 * len(CONFIG_KEYS)
    with pytest.raises(mc.InputError, match="^unknown config key 'epoch'; did you mean 'epochs'"):
        Config(epoch=3)
    with pytest.raises(mc.InputError, match="^clip: given twice"):
        Config("none", clip="none")
    assert Config(lr=np.float32(0.5), epochs=np.int64(2), hidden=[np.int64(8)]) == Config(lr=0.5, epochs=2, hidden=(8,))


def test_a_grid_value_keeps_its_digits_and_is_checked_in_float32(tmp_path):
    cells = make_cells(Config(optimizer="adam"), parse_grid(["beta2=0.999,0.9999999,0.99999994"]))
    assert [cell.name for cell in cells] == ["beta2=0.999", "beta2=0.9999999", "beta2=0.99999994"]
    assert [cell.config.beta2 for cell in cells] == [0.999, 0.9999999, 0.99999994]
    message = "beta2=0.99999999 is 1.0 in float32, where training runs; it must be below 1 (at most 0.99999994)"
    with pytest.raises(mc.InputError) as caught:
        mc.sweep({"beta2": [0.9, 0.99999999]}, optimizer="adam", out=tmp_path)
    assert str(caught.value) == f"grid {message}" and caught.value.key == "grid"
    result = CliRunner().invoke(cli, ["sweep", "--optimizer", "adam", "--grid", "beta2=0.9,0.99999999", "--out",
                                      str(tmp_path)])
    assert result.exit_code == 2 and result.stderr == f"Error: --grid {message}\n"
    assert not any(tmp_path.iterdir())
