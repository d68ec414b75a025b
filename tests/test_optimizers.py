"""The optimizers and losses of compiled runs against Keras's own optimizers and a float64 NumPy pass."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import first_digits, small_dataset

from mnist_clip.cli import cli
from mnist_clip.config import Config
from mnist_clip.data import Dataset
from mnist_clip.experiment import run_experiment
from mnist_clip.nn.model import init_params, one_hot, prepare_inputs
from mnist_clip.runs.reader import read_run
from mnist_clip.training.step import Trainer, train_epochs

STEPS = 8  # two epochs of four full batches of 128


@pytest.fixture(scope="module")
def train_set() -> Dataset:
    """512 examples: each epoch is one chunk of four full batches, so a run compiles one
    program (a shorter last batch would need a second)."""
    return small_dataset(n_train=512)


def batches(dataset: Dataset, config: Config):
    x_all, y_all = prepare_inputs(dataset.x_train, config.input_scale), one_hot(dataset.y_train)
    starts = list(range(0, len(x_all), config.batch_size))
    for step in range(STEPS):
        start = starts[step % len(starts)]
        yield tf.constant(x_all[start : start + config.batch_size]), tf.constant(y_all[start : start + config.batch_size])


def keras_weights_per_step(config: Config, dataset: Dataset, optimizer, clip=lambda grads: grads) -> list[dict]:
    """The tutorial's eager loop, with a Keras optimizer applying the (clipped) gradients of the
    trained tensors; the weights after every step."""
    params = init_params(config.seed, config.hidden, config.init)
    names = list(params)
    history = [{name: v.numpy() for name, v in params.items()}]
    for x, y in batches(dataset, config):
        with tf.GradientTape() as tape:
            h = x
            for layer in range(1, config.n_layers + 1):
                z = h @ params[f"w{layer}"] + params[f"b{layer}"]
                h = tf.nn.relu(z) if layer < config.n_layers else z
            if config.loss == "mse":
                loss = tf.reduce_mean(tf.square(y - h))
            else:
                loss = tf.reduce_mean(keras.losses.categorical_crossentropy(y, h, from_logits=True))
        grads = clip(tape.gradient(loss, [params[n] for n in names]))
        optimizer.apply_gradients([(g, params[n]) for g, n in zip(grads, names) if n in config.trainable])
        history.append({name: v.numpy() for name, v in params.items()})
    return history


def compiled_run(config: Config, dataset: Dataset):
    trainer = Trainer(config.replace(epochs=2), dataset)
    values = np.concatenate([r.values for r in train_epochs(trainer)])
    assert len(values) == STEPS
    return trainer, values


CASES = {
    "sgd momentum": (Config(optimizer="sgd", momentum=0.9, lr=0.01), lambda: keras.optimizers.SGD(0.01, momentum=0.9)),
    "sgd nesterov": (Config(optimizer="sgd", momentum=0.8, nesterov=True, lr=0.02),
                     lambda: keras.optimizers.SGD(0.02, momentum=0.8, nesterov=True)),
    "adam": (Config(optimizer="adam", lr=0.001), lambda: keras.optimizers.Adam(0.001)),
    "adam beta1 0.5": (Config(optimizer="adam", lr=0.002, beta1=0.5, beta2=0.99, epsilon=1e-5),
                       lambda: keras.optimizers.Adam(0.002, beta_1=0.5, beta_2=0.99, epsilon=1e-5)),
    "rmsprop": (Config(optimizer="rmsprop", lr=0.001), lambda: keras.optimizers.RMSprop(0.001)),
    "rmsprop momentum": (Config(optimizer="rmsprop", lr=0.0005, rho=0.8, momentum=0.5, epsilon=1e-6),
                         lambda: keras.optimizers.RMSprop(0.0005, rho=0.8, momentum=0.5, epsilon=1e-6)),
    "adam two kernels crossentropy": (Config(optimizer="adam", lr=0.001, loss="crossentropy", train=("w1", "w2")),
                                      lambda: keras.optimizers.Adam(0.001)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_optimizer_gives_keras_weights_step_by_step(train_set, case):
    config, make_optimizer = CASES[case]
    config = config.replace(clip="global_norm", clip_norm=1.0)
    trainer, values = compiled_run(config, train_set)
    reference = keras_weights_per_step(config, train_set, make_optimizer(),
                                       lambda grads: tf.clip_by_global_norm(grads, 1.0)[0])
    for name in config.param_names:
        np.testing.assert_allclose(trainer.params[name].numpy(), reference[-1][name], rtol=1e-4, atol=2e-6, err_msg=name)
        steps = [np.linalg.norm(after[name].astype(np.float64) - before[name]) for before, after in
                 zip(reference[:-1], reference[1:])]
        np.testing.assert_allclose(values[:, trainer.columns.index(f"{name}_update")], steps, rtol=2e-3, atol=1e-8,
                                   err_msg=name)
        if name.startswith("w"):  # the weight's norm when each step began
            np.testing.assert_allclose(values[:, trainer.columns.index(f"{name}_norm")],
                                       [np.linalg.norm(w[name].astype(np.float64)) for w in reference[:-1]],
                                       rtol=1e-5, err_msg=name)
        if name not in config.trainable:
            assert np.array_equal(trainer.params[name].numpy(), trainer.initial_params[name])
            assert not values[:, trainer.columns.index(f"{name}_update")].any()
    assert values[:, trainer.columns.index("clipped")].any()  # clipping acted before the optimizer


@pytest.mark.parametrize("keras_clip, config", [
    ({"global_clipnorm": 15.0}, Config(optimizer="sgd", clip="global_norm", clip_norm=15.0, lr=0.05)),
    ({"clipnorm": 1.0}, Config(optimizer="adam", clip="norm", clip_norm=1.0, lr=0.001)),
    ({"clipvalue": 0.01}, Config(optimizer="sgd", clip="value", clip_norm=0.01, lr=0.05)),
], ids=["SGD global_clipnorm", "Adam clipnorm", "SGD clipvalue"])
def test_keras_optimizer_clipping_arguments_are_the_clip_methods(train_set, keras_clip, config):
    trainer, values = compiled_run(config, train_set)
    kind = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}[config.optimizer]
    reference = keras_weights_per_step(config, train_set, kind(config.lr, **keras_clip))
    for name in config.param_names:
        np.testing.assert_allclose(trainer.params[name].numpy(), reference[-1][name], rtol=1e-4, atol=2e-6, err_msg=name)
    assert values[:, trainer.columns.index("clipped")].any()


def numpy_step(p: dict, x: np.ndarray, y: np.ndarray, loss: str) -> dict:
    """Forward and backward pass of the 3-layer ReLU net in float64, for either loss."""
    z1 = x @ p["w1"] + p["b1"]
    h1 = np.maximum(z1, 0)
    z2 = h1 @ p["w2"] + p["b2"]
    h2 = np.maximum(z2, 0)
    out = h2 @ p["w3"] + p["b3"]
    if loss == "mse":
        value = np.mean((y - out) ** 2)
        d_out = 2 * (out - y) / out.size
    else:
        shifted = out - out.max(axis=1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        value = -np.mean((y * log_softmax).sum(axis=1))
        d_out = (np.exp(log_softmax) - y) / len(x)
    d_z2 = (d_out @ p["w3"].T) * (z2 > 0)
    d_z1 = (d_z2 @ p["w2"].T) * (z1 > 0)
    grads = {"w1": x.T @ d_z1, "b1": d_z1.sum(0), "w2": h1.T @ d_z2, "b2": d_z2.sum(0), "w3": h2.T @ d_out,
             "b3": d_out.sum(0)}
    return {"loss": value, "grads": grads}


@pytest.mark.parametrize("loss", ["mse", "crossentropy"])
def test_adam_run_first_steps_match_float64_numpy(mnist_5k, loss):
    config = Config(optimizer="adam", lr=0.001, loss=loss, clip="global_norm", clip_norm=1.0, epochs=1)
    data = first_digits(mnist_5k, 512, 64)
    trainer = Trainer(config, data)
    values = trainer.run_epoch(0).values
    col = {name: values[:, i].astype(np.float64) for i, name in enumerate(trainer.columns)}
    p = {k: v.astype(np.float64) for k, v in trainer.initial_params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    x_all, y_all = prepare_inputs(data.x_train, 50.0).astype(np.float64), one_hot(data.y_train).astype(np.float64)
    for step in range(4):
        x, y = x_all[128 * step : 128 * (step + 1)], y_all[128 * step : 128 * (step + 1)]
        ref = numpy_step(p, x, y, loss)
        before = {k: np.linalg.norm(g) for k, g in ref["grads"].items()}
        scale = min(1.0, 1.0 / np.sqrt(sum(n**2 for n in before.values())))
        assert np.isclose(col["loss"][step], ref["loss"], rtol=1e-4), step
        t = step + 1
        alpha = 0.001 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        for k, g in ref["grads"].items():
            g = g * scale
            m[k] += (g - m[k]) * 0.1
            v[k] += (g * g - v[k]) * 0.001
            update = alpha * m[k] / (np.sqrt(v[k]) + 1e-7)
            p[k] = p[k] - update
            assert np.isclose(col[f"{k}_before"][step], before[k], rtol=2e-3), (step, k)
            assert np.isclose(col[f"{k}_after"][step], before[k] * scale, rtol=2e-3), (step, k)
            assert np.isclose(col[f"{k}_update"][step], np.linalg.norm(update), rtol=2e-3), (step, k)


def test_moved_equals_the_distance_between_the_saved_weights(tmp_path, train_set):
    config = Config(optimizer="sgd", momentum=0.9, lr=0.05, epochs=2, freeze=("w2",))
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    run_experiment(config, train_set, run_dir, draw_plots=False)
    run = read_run(run_dir)
    start, end = np.load(run_dir / "params_init.npz"), np.load(run_dir / "params_final.npz")
    for name in ("w1", "w2", "w3"):
        expected = np.linalg.norm(end[name].astype(np.float64) - start[name]) / np.linalg.norm(start[name])
        assert np.isclose(run.epochs[f"{name}_moved"][-1], expected, rtol=1e-6), name
    assert run.epochs["w2_moved"].tolist() == [0.0, 0.0] and run.epochs["w1_moved"][-1] > 0
    assert "b1_moved" not in run.epochs
    config_json = json.loads((run_dir / "config.json").read_text())
    assert config_json["optimizer"] == "sgd" and config_json["momentum"] == 0.9


REFUSALS = {
    "momentum one": (["--momentum", "1"], "--momentum: must be a number in [0, 1) (got 1.0)"),
    "momentum negative": (["--momentum", "-0.1"], "--momentum: must be a number in [0, 1)"),
    "beta1 one": (["--optimizer", "adam", "--beta1", "1"], "--beta1: must be a number in [0, 1)"),
    "beta2 above one": (["--optimizer", "adam", "--beta2", "1.5"], "--beta2: must be a number in [0, 1)"),
    "epsilon zero": (["--optimizer", "adam", "--epsilon", "0"], "--epsilon: must be > 0"),
    "rho one": (["--optimizer", "rmsprop", "--rho", "1"], "--rho: must be a number in [0, 1)"),
    "nesterov with adam": (["--optimizer", "adam", "--nesterov"], "--nesterov: an option of sgd, not of --optimizer adam; adam takes --beta1, --beta2, --epsilon"),
    "nesterov off with adam": (["--optimizer", "adam", "--no-nesterov"], "--nesterov: an option of sgd"),
    "momentum with adam": (["--optimizer", "adam", "--momentum", "0.9"], "--momentum: an option of sgd and rmsprop"),
    "beta1 with sgd": (["--beta1", "0.5"], "--beta1: an option of adam, not of --optimizer sgd; sgd takes --momentum, --nesterov"),
    "rho with sgd at its default": (["--rho", "0.9"], "--rho: an option of rmsprop, not of --optimizer sgd"),
    "unknown optimizer": (["--optimizer", "adagrad"], "'adagrad' is not one of"),
    "unknown loss": (["--loss", "hinge"], "'hinge' is not one of"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_optimizer_options_that_make_no_sense_are_refused(tmp_path, case):
    args, message = REFUSALS[case]
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["train", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not out.exists()


def test_a_toml_option_of_another_optimizer_is_refused(tmp_path):
    recipe = tmp_path / "c.toml"
    recipe.write_text('optimizer = "rmsprop"\nbeta2 = 0.99\n')
    result = CliRunner().invoke(cli, ["train", "--config", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "beta2: an option of adam, not of optimizer='rmsprop'" in result.stderr
    from mnist_clip.api import make_config
    from mnist_clip.errors import InputError

    with pytest.raises(InputError, match="nesterov: an option of sgd, not of optimizer='adam'"):
        make_config(None, {"optimizer": "adam", "nesterov": False})
    assert make_config(None, {"optimizer": "adam", "beta1": 0.5}).optimizer_settings == {
        "beta1": 0.5, "beta2": 0.999, "epsilon": 1e-7}
