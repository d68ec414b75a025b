"""Config: defaults, TOML loading, precedence and validation."""

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
