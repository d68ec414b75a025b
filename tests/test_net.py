"""Normalisation layers and residual paths against float64 NumPy and Keras's own layers."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import first_digits

from mnist_clip.cli import cli
from mnist_clip.config import Config
from mnist_clip.experiment import run_experiment
from mnist_clip.nn import Net
from mnist_clip.nn.model import forward, init_params, one_hot, prepare_inputs
from mnist_clip.runs.reader import read_run
from mnist_clip.training.step import Trainer

EPS = 1e-3
ACT = {"relu": lambda u: np.maximum(u, 0), "sigmoid": lambda u: 1 / (1 + np.exp(-u)), "tanh": np.tanh}
DERIVATIVE = {"relu": lambda u: (u > 0).astype(np.float64), "sigmoid": lambda u: ACT["sigmoid"](u) * (1 - ACT["sigmoid"](u)),
              "tanh": lambda u: 1 - np.tanh(u) ** 2}


def numpy_net(p: dict, x: np.ndarray, y: np.ndarray, hidden, activation, norm, residual) -> dict:
    """Forward and backward pass in float64, written out from EXPERIMENT.md's table: matmul,
    norm (batch: statistics per unit over the batch; layer: per example over the units),
    activation, residual; the back-propagated signal is dL/dz at the matmul's output."""
    sizes = (784, *hidden, 10)
    n_layers = len(sizes) - 1
    h, cache = x, []
    for layer in range(1, n_layers + 1):
        z = h @ p[f"w{layer}"] + (p[f"b{layer}"] if f"b{layer}" in p else 0)
        if layer == n_layers:
            out = z
            break
        if norm == "none":
            xhat, u, axis = None, z, None
        else:
            axis = 0 if norm == "batch" else 1
            mean, var = z.mean(axis=axis, keepdims=True), z.var(axis=axis, keepdims=True)
            xhat = (z - mean) / np.sqrt(var + EPS)
            u = p[f"gamma{layer}"] * xhat + p[f"beta{layer}"]
        a = ACT[activation](u)
        skip = residual and sizes[layer - 1] == sizes[layer]
        cache.append((h, z, xhat, u, axis, skip, var if norm != "none" else None))
        h = a + h if skip else a
    loss = np.mean((y - out) ** 2)
    grads, deltas = {}, [None] * n_layers
    d_out = 2 * (out - y) / out.size
    deltas[-1] = d_out
    grads[f"w{n_layers}"], grads[f"b{n_layers}"] = h.T @ d_out, d_out.sum(0)
    dh = d_out @ p[f"w{n_layers}"].T
    for layer in range(n_layers - 1, 0, -1):
        h_prev, z, xhat, u, axis, skip, var = cache[layer - 1]
        du = dh * DERIVATIVE[activation](u)
        if norm == "none":
            dz = du
            grads[f"b{layer}"] = dz.sum(0)
        else:
            grads[f"gamma{layer}"] = (du * xhat).sum(0)
            grads[f"beta{layer}"] = du.sum(0)
            dxhat = du * p[f"gamma{layer}"]
            count = z.shape[axis]
            dz = (count * dxhat - dxhat.sum(axis, keepdims=True) - xhat * (dxhat * xhat).sum(axis, keepdims=True)) / (
                count * np.sqrt(var + EPS))
        deltas[layer - 1] = dz
        grads[f"w{layer}"] = h_prev.T @ dz
        dh = dz @ p[f"w{layer}"].T + (dh if skip else 0)
    return {"loss": loss, "grads": grads, "deltas": deltas}


CASES = [
    ((32, 32), "sigmoid", "batch", False),
    ((32, 32), "tanh", "layer", False),
    ((32, 32, 32), "relu", "none", True),
    ((24, 24, 24), "tanh", "batch", True),
    ((32, 32), "relu", "layer", True),
]


@pytest.mark.parametrize("hidden, activation, norm, residual", CASES,
                         ids=[f"{a}-{n}{'-residual' if r else ''}" for _, a, n, r in CASES])
def test_first_steps_match_float64_numpy(mnist_5k, hidden, activation, norm, residual):
    config = Config(hidden=hidden, activation=activation, norm=norm, residual=residual, clip="global_norm",
                    clip_norm=0.5, lr=0.5, epochs=1, init="glorot")
    data = first_digits(mnist_5k, 384, 50)
    trainer = Trainer(config, data)
    values = trainer.run_epoch(0).values
    col = {name: values[:, i].astype(np.float64) for i, name in enumerate(trainer.columns)}
    p = {k: v.astype(np.float64) for k, v in trainer.initial_params.items()}
    assert set(p) == set(config.param_names)
    x_all, y_all = prepare_inputs(data.x_train, 50.0).astype(np.float64), one_hot(data.y_train).astype(np.float64)
    for step in range(3):
        x, y = x_all[128 * step : 128 * (step + 1)], y_all[128 * step : 128 * (step + 1)]
        ref = numpy_net(p, x, y, hidden, activation, norm, residual)
        before = {k: np.linalg.norm(g) for k, g in ref["grads"].items()}
        assert set(before) == set(config.param_names)
        scale = min(1.0, 0.5 / np.sqrt(sum(n**2 for n in before.values())))
        assert np.isclose(col["loss"][step], ref["loss"], rtol=1e-4), step
        for k in config.param_names:
            assert np.isclose(col[f"{k}_before"][step], before[k], rtol=2e-3, atol=1e-9), (step, k)
            assert np.isclose(col[f"{k}_after"][step], before[k] * scale, rtol=2e-3, atol=1e-9), (step, k)
        for layer, delta in enumerate(ref["deltas"], start=1):
            assert np.isclose(col[f"delta{layer}"][step], np.linalg.norm(delta), rtol=2e-3), (step, layer)
        p = {k: v - 0.5 * scale * ref["grads"][k] for k, v in p.items()}


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_each_norm_is_keras_layer_on_the_same_input(norm):
    rng = np.random.default_rng(4)
    z = rng.normal(2.0, 3.0, (64, 16)).astype(np.float32)
    gamma, beta = rng.normal(1, 0.2, 16).astype(np.float32), rng.normal(0, 0.5, 16).astype(np.float32)
    net = Net.of({"hidden": (16,), "activation": "relu", "norm": norm})
    params = {"w1": tf.Variable(np.eye(784, 16, dtype=np.float32)), "gamma1": tf.Variable(gamma),
              "beta1": tf.Variable(beta), "w2": tf.Variable(np.zeros((16, 10), np.float32)),
              "b2": tf.Variable(np.zeros(10, np.float32))}
    x = np.zeros((64, 784), np.float32)
    x[:, :16] = z
    mine = forward(params, tf.constant(x), net).hs[0].numpy()
    layer = keras.layers.BatchNormalization() if norm == "batch" else keras.layers.LayerNormalization()
    layer.build((None, 16))
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    theirs = np.maximum(layer(z, training=True).numpy(), 0)
    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)
    if norm == "batch":  # the moving statistics after one step, and inference with them
        moving = {"moving_mean1": tf.constant(0.99 * 0 + 0.01 * z.mean(0)),
                  "moving_variance1": tf.constant(0.99 * 1 + 0.01 * z.var(0))}
        np.testing.assert_allclose(layer.moving_mean.numpy(), moving["moving_mean1"].numpy(), rtol=1e-5)
        np.testing.assert_allclose(layer.moving_variance.numpy(), moving["moving_variance1"].numpy(), rtol=1e-5)
        inference = forward(params, tf.constant(x), net, moving).hs[0].numpy()
        np.testing.assert_allclose(inference, np.maximum(layer(z, training=False).numpy(), 0), rtol=1e-5, atol=1e-5)


def test_batch_norm_test_accuracy_is_that_of_the_saved_moving_statistics(tmp_path, mnist_5k):
    config = Config(hidden=(32, 32), activation="sigmoid", norm="batch", epochs=2, lr=0.5, init="glorot")
    data = first_digits(mnist_5k, 640, 300)
    run_dir = tmp_path / "bn"
    run_dir.mkdir()
    run_experiment(config, data, run_dir, draw_plots=False)
    final = dict(np.load(run_dir / "params_final.npz"))
    assert {"moving_mean1", "moving_variance1", "moving_mean2", "moving_variance2"} <= set(final)
    assert not np.allclose(final["moving_variance1"], 1.0)  # they moved
    p = {k: v.astype(np.float64) for k, v in final.items()}
    h = prepare_inputs(data.x_test, 50.0).astype(np.float64)
    for layer in (1, 2):
        z = h @ p[f"w{layer}"]
        u = p[f"gamma{layer}"] * (z - p[f"moving_mean{layer}"]) / np.sqrt(p[f"moving_variance{layer}"] + EPS) + p[f"beta{layer}"]
        h = 1 / (1 + np.exp(-u))
    predicted = np.argmax(h @ p["w3"] + p["b3"], axis=1)
    accuracy = np.mean(predicted == data.y_test)
    run = read_run(run_dir)
    assert np.isclose(run.epochs["test_accuracy"][-1], accuracy, atol=0.5 / 300)
    assert np.isclose(run.summary["test_accuracy"], accuracy, atol=0.5 / 300)


def test_initial_gains_are_one_and_shifts_zero():
    params = init_params(7, (16, 16), "he", Net.of({"hidden": (16, 16), "norm": "layer"}))
    assert list(params) == ["w1", "gamma1", "beta1", "w2", "gamma2", "beta2", "w3", "b3"]
    assert np.all(params["gamma2"].numpy() == 1) and np.all(params["beta1"].numpy() == 0)


REFUSALS = {
    "residual without equal widths": (["--residual"], "residual: no hidden layer of this net (784-256-128-10) has equal"),
    "unknown norm": (["--norm", "group"], "'group' is not one of"),
    "a bias of a normalised layer": (["--norm", "batch", "--train", "b1"],
                                     "unknown tensor 'b1'; allowed: w1, gamma1, beta1, w2, gamma2, beta2, w3, b3"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_norm_and_residual_refusals(tmp_path, case):
    args, message = REFUSALS[case]
    result = CliRunner().invoke(cli, ["train", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.output
    assert not (tmp_path / "out").exists()
