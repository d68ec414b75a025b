"""Config: defaults, TOML loading, precedence and validation."""

import dataclasses
from pathlib import Path

import pytest

from mnist_clip.config import Config, load_toml, resolve
from mnist_clip.errors import InputError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_defaults_are_the_reference_experiment():
    c = Config()
    assert (c.clip, c.clip_norm, c.lr, c.epochs, c.batch_size, c.input_scale, c.seed, c.shuffle) == (
        "global_norm", 15.0, 0.01, 30, 128, 50.0, 1234, False,
    )
    assert c.trainable == ("w1", "b1", "w2", "b2", "w3", "b3")


def test_blog_toml_spells_out_the_defaults():
    assert resolve(load_toml(CONFIGS / "blog.toml"), {}) == Config()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_recipe_loads(path):
    resolve(load_toml(path), {})
    assert "#" in path.read_text()  # each recipe says why


def test_both_key_spellings_and_precedence(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('clip-norm = 3\nbatch_size = 64\nlr = 0.5\ntrain = ["w3", "b3"]\n')
    values = load_toml(path)
    config = resolve(values, {"lr": 0.2})
    assert config.clip_norm == 3.0 and isinstance(config.clip_norm, float)
    assert config.batch_size == 64
    assert config.lr == 0.2  # the command line wins over the file
    assert config.epochs == 30  # the default fills the rest
    assert config.trainable == ("w3", "b3")


@pytest.mark.parametrize(
    "text, message",
    [
        ("clip_nrom = 1", "unknown config key 'clip_nrom'; did you mean 'clip_norm'?"),
        ("epochs = 2.5", "epochs: must be an integer"),
        ("shuffle = 1", "shuffle: must be true or false"),
        ("lr = 'fast'", "lr: must be a number"),
        ("clip = 'sometimes'", "clip: unknown value 'sometimes'; allowed: global_norm, norm, value, average_norm, agc, autoclip, none"),
        ("lr = 0", "lr: must be > 0"),
        ("clip_norm = -1", "clip_norm: must be > 0"),
        ("epochs = 0", "epochs: must be an integer >= 1"),
        ("batch-size = 0", "batch_size: must be an integer >= 1"),
        ("input-scale = 0", "input_scale: must be > 0"),
        ("dataset = 'cifar'", "dataset: unknown value 'cifar'"),
        ("train = 'w4'", "train: unknown tensor 'w4'; allowed: w1, b1, w2, b2, w3, b3"),
        ("freeze = ['w1','b1','w2','b2','w3','b3']", "freeze: names every tensor"),
        ("lr = [", "malformed TOML"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(InputError) as info:
        resolve(load_toml(path), {})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_malformed_toml_names_the_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("lr = 0.1\nepochs = \n")
    with pytest.raises(InputError, match="line 2"):
        load_toml(path)


def test_clip_none_needs_no_threshold():
    assert Config(clip="none", clip_norm=0).clip_norm == 0


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="config file not found"):
        load_toml(tmp_path / "nope.toml")


# --- each option declared once -----------------------------------------------------------------

def test_every_field_declares_its_help_and_its_choices_or_range_once():
    from mnist_clip.config import CHOICES, OPTIONS, RANGES

    assert list(OPTIONS) == [f.name for f in dataclasses.fields(Config)]
    for key, option in OPTIONS.items():
        assert option.help.endswith(".") and "\n" not in option.help, key
        assert not (option.choices and option.range), key
    assert CHOICES["clip"] == OPTIONS["clip"].choices and RANGES["lr"] is OPTIONS["lr"].range
    assert set(RANGES) == {key for key, option in OPTIONS.items() if option.range and option.kind == "float"}


def test_a_field_without_a_declaration_is_refused():
    from mnist_clip.options import declared, option

    @dataclasses.dataclass(frozen=True)
    class Declared:
        rate: float = option(0.5, "A rate.")

    assert declared(Declared)["rate"].kind == "float" and declared(Declared)["rate"].default == 0.5

    @dataclasses.dataclass(frozen=True)
    class Undeclared:
        rate: float = 0.5

    with pytest.raises(TypeError, match="Undeclared.rate is declared without option()"):
        declared(Undeclared)


def test_every_default_reads_back_from_its_text():
    from mnist_clip.config import OPTIONS
    from mnist_clip.options import format_text, parse_text

    defaults = Config()
    for key, option in OPTIONS.items():
        value = getattr(defaults, key)
        if value not in (None, ()):
            assert parse_text(option, format_text(option, value)) == value, key


@pytest.mark.parametrize("key, text, value", [
    ("lr", " 0.5 ", 0.5), ("epochs", "3", 3), ("shuffle", "True", True), ("clip", "none", "none"),
    ("hidden", "128x2,64", (128, 128, 64)), ("hidden", "none", ()), ("train", "w3, b3", ("w3", "b3")),
    ("data_path", "", None), ("data_path", "d.npz", "d.npz"),
])
def test_the_one_text_parser_reads_each_kind(key, text, value):
    from mnist_clip.config import OPTIONS
    from mnist_clip.options import parse_text

    assert parse_text(OPTIONS[key], text) == value


def test_a_grid_joins_list_items_with_plus():
    from mnist_clip.config import OPTIONS
    from mnist_clip.options import parse_text

    assert parse_text(OPTIONS["train"], "w3+b3", joiner="+") == ("w3", "b3")
    assert parse_text(OPTIONS["hidden"], "64+32x2", joiner="+") == (64, 32, 32)
    with pytest.raises(InputError, match="^grid train: is empty; name at least one tensor, e.g. w3\\+b3"):
        parse_text(OPTIONS["train"], "+", "grid train", joiner="+")


@pytest.mark.parametrize("key, text, message", [
    ("lr", "fast", "lr: 'fast' is not a valid float"),
    ("clip_norm", "none", "clip_norm: 'none' is not a valid float; to train without clipping give clip='none'"),
    ("epochs", "2.5", "epochs: '2.5' is not a valid integer"),
    ("shuffle", "yes", "shuffle: 'yes' is not true or false"),
    ("loss", "hinge", "loss: 'hinge' is not one of 'mse', 'crossentropy'"),
    ("freeze", " , ", "freeze: is empty; name at least one tensor, e.g. w3,b3 (or leave freeze out)"),
])
def test_unreadable_text_is_one_line_naming_the_option(key, text, message):
    from mnist_clip.config import OPTIONS
    from mnist_clip.options import parse_text

    with pytest.raises(InputError) as caught:
        parse_text(OPTIONS[key], text)
    assert str(caught.value) == message and caught.value.key == key


@pytest.mark.parametrize("command", ["train", "demo", "sweep", "cures"])
def test_every_field_is_an_option_of_every_command_that_takes_a_config(command):
    import click

    from mnist_clip.cli import cli
    from mnist_clip.config import OPTIONS

    params = {param.name: param for param in cli.commands[command].params if isinstance(param, click.Option)}
    for key, option in OPTIONS.items():
        param = params[key]
        assert "--" + key.replace("_", "-") in param.opts and param.help == option.help_text(), key
        if option.range:
            assert f"Must be {option.range.words}." in param.help, key


def test_the_help_of_train_shows_each_choice_range_and_default():
    from click.testing import CliRunner

    from mnist_clip.cli import cli

    shown = " ".join(CliRunner().invoke(cli, ["train", "--help"], terminal_width=200).output.split())
    assert "--clip [global_norm|norm|value|average_norm|agc|autoclip|none] Clipping method. [default: global_norm]" in shown
    assert "--momentum FLOAT sgd, rmsprop: momentum. Must be a number in [0, 1). [default: 0]" in shown
    assert "--hidden WIDTHS" in shown and "[default: 256,128]" in shown
    assert "--seed INTEGER Seed for the weights (and shuffling). Must be an integer from 0 to 2147483647." in shown
