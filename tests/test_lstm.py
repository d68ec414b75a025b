"""The LSTM against a float64 NumPy forward and backward pass through time and Keras's own LSTM."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import first_digits

from mnist_clip.config import Config
from mnist_clip.nn.model import config_params, forward, one_hot, prepare_inputs
from mnist_clip.training.step import Trainer, train_epochs

WIDTH, BATCH, STEPS, LR, CLIP_NORM = 8, 32, 3, 0.05, 0.02


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-a))


def numpy_lstm(p: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """Loss, every tensor's gradient, |dL/dh_t| and |dL/dc_t| for t = 1..28, in float64, written
    from EXPERIMENT.md: z_t = x_t wx + h_(t-1) wh + bh split into i, f, c, o; c_t = f c_(t-1) + i g;
    h_t = o tanh(c_t); out = h_28 wo + bo; MSE."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    width = p["wh"].shape[0]
    rows = x.astype(np.float64).reshape(len(x), 28, 28)
    h, c = np.zeros((len(x), width)), np.zeros((len(x), width))
    cache = []
    for t in range(28):
        z = rows[:, t] @ p["wx"] + h @ p["wh"] + p["bh"]
        i, f, g, o = sigmoid(z[:, :width]), sigmoid(z[:, width:2 * width]), np.tanh(z[:, 2 * width:3 * width]), \
            sigmoid(z[:, 3 * width:])
        c_next = f * c + i * g
        cache.append((h, c, i, f, g, o, c_next))
        h, c = o * np.tanh(c_next), c_next
    out = h @ p["wo"] + p["bo"]
    loss = np.mean((y - out) ** 2)
    d_out = 2 * (out - y) / y.size
    grads = {"wx": 0.0, "wh": 0.0, "bh": 0.0, "wo": h.T @ d_out, "bo": d_out.sum(0)}
    dh, dc_later = d_out @ p["wo"].T, np.zeros_like(c)
    signal_h, signal_c = [0.0] * 28, [0.0] * 28
    for t in reversed(range(28)):
        h_prev, c_prev, i, f, g, o, c_t = cache[t]
        signal_h[t] = np.linalg.norm(dh)
        dc = dc_later + dh * o * (1 - np.tanh(c_t) ** 2)  # through h_t and through c_(t+1)
        signal_c[t] = np.linalg.norm(dc)
        dz = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g),
                             dh * np.tanh(c_t) * o * (1 - o)], axis=1)
        grads["wx"] = grads["wx"] + rows[:, t].T @ dz
        grads["wh"] = grads["wh"] + h_prev.T @ dz
        grads["bh"] = grads["bh"] + dz.sum(0)
        dh, dc_later = dz @ p["wh"].T, dc * f
    return {"loss": loss, "grads": grads, "dh": np.array(signal_h), "dc": np.array(signal_c)}


@pytest.mark.parametrize("clip", ["none", "global_norm"])
def test_first_steps_match_numpy_lstm(mnist_5k, clip):
    config = Config(model="lstm", hidden=(WIDTH,), recurrent_gain=1.3, clip=clip, clip_norm=CLIP_NORM,
                    batch_size=BATCH, epochs=1, lr=LR, input_scale=255.0, init="glorot")
    data = first_digits(mnist_5k, STEPS * BATCH, 16)
    trainer = Trainer(config, data)
    p = {name: v.numpy() for name, v in trainer.params.items()}
    values = next(train_epochs(trainer)).values
    assert len(values) == STEPS
    column = {name: i for i, name in enumerate(trainer.columns)}
    x_all, y_all = prepare_inputs(data.x_train, 255.0), one_hot(data.y_train)
    fired = 0
    for step in range(STEPS):
        x, y = x_all[step * BATCH:(step + 1) * BATCH], y_all[step * BATCH:(step + 1) * BATCH]
        ref = numpy_lstm(p, x, y)
        row = values[step]
        np.testing.assert_allclose(row[column["loss"]], ref["loss"], rtol=1e-5)
        norms = {name: np.linalg.norm(g) for name, g in ref["grads"].items()}
        global_norm = np.sqrt(sum(n * n for n in norms.values()))
        scale = min(1.0, CLIP_NORM / global_norm) if clip == "global_norm" else 1.0
        fired += scale < 1
        np.testing.assert_allclose(row[column["global_norm_before"]], global_norm, rtol=1e-4)
        for name, norm in norms.items():
            np.testing.assert_allclose(row[column[f"{name}_before"]], norm, rtol=1e-4, err_msg=name)
            np.testing.assert_allclose(row[column[f"{name}_after"]], norm * scale, rtol=1e-4, err_msg=name)
            np.testing.assert_allclose(row[column[f"{name}_update"]], LR * norm * scale, rtol=1e-4, err_msg=name)
        for prefix in ("dh", "dc"):
            signal = row[[column[f"{prefix}{t}"] for t in range(1, 29)]]
            np.testing.assert_allclose(signal, ref[prefix], rtol=2e-4, atol=1e-12, err_msg=prefix)
        # the next step's reference starts from this step's SGD update, clipped as the run clips
        p = {name: p[name] - LR * scale * np.asarray(g) for name, g in ref["grads"].items()}
    assert (fired > 0) == (clip == "global_norm")
    final = {name: v.numpy() for name, v in trainer.params.items()}
    for name in final:
        np.testing.assert_allclose(final[name], p[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_a_run_logs_the_hidden_then_the_cell_signal(mnist_5k):
    config = Config(model="lstm", hidden=(WIDTH,), batch_size=BATCH, epochs=1, input_scale=255.0)
    trainer = Trainer(config, first_digits(mnist_5k, BATCH, 16))
    row = next(train_epochs(trainer)).values[0]
    column = {name: i for i, name in enumerate(trainer.columns)}
    dh = row[[column[f"dh{t}"] for t in range(1, 29)]]
    dc = row[[column[f"dc{t}"] for t in range(1, 29)]]
    assert np.all(dh > 0) and np.all(dc > 0)
    assert column["dc1"] == column["dh28"] + 1  # dh1..dh28, then dc1..dc28


@pytest.mark.parametrize("gain", [0.5, 1.0])
def test_initial_weights_follow_keras_lstm(gain):
    config = Config(model="lstm", hidden=(16,), recurrent_gain=gain, seed=3)
    params = config_params(config)
    assert params["wx"].shape == (28, 64) and params["wh"].shape == (16, 64) and params["bh"].shape == (64,)
    wh = params["wh"].numpy().astype(np.float64)
    np.testing.assert_allclose(np.linalg.svd(wh, compute_uv=False), gain, rtol=1e-5)
    layer = keras.layers.LSTM(16)  # unit_forget_bias: the forget gate's bias starts at 1
    layer.build((None, 28, 28))
    np.testing.assert_array_equal(params["bh"].numpy(), layer.weights[2].numpy())
    assert np.array_equal(wh, config_params(config)["wh"].numpy())  # reproducible
    assert not np.allclose(wh, config_params(config.replace(seed=4))["wh"].numpy())  # seeded per run


def test_the_forward_pass_equals_keras_lstm_then_dense(mnist_5k):
    config = Config(model="lstm", hidden=(12,), recurrent_gain=1.2, init="glorot")
    params = config_params(config)
    # give the biases values, so that the gates' order along the 4H axis is tested too
    rng = np.random.default_rng(0)
    params["bh"].assign(rng.normal(0, 0.5, 48).astype(np.float32))
    params["bo"].assign(rng.normal(0, 0.1, 10).astype(np.float32))
    x = prepare_inputs(mnist_5k.x_train[:50], 255.0)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.LSTM(12), keras.layers.Dense(10)])
    model.set_weights([params[name].numpy() for name in ("wx", "wh", "bh", "wo", "bo")])
    expected = model(x.reshape(-1, 28, 28)).numpy()
    got = forward(params, tf.constant(x), config.net).out.numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(expected).max() > 0.1  # a real output, not zeros


def test_every_command_takes_the_lstm(mnist_5k, tmp_path):
    """train (with TensorBoard and pictures), a demo over 2 seeds, a sweep over the clipping
    methods with their own columns (norm and average_norm share global_norm's), cures and
    compare, through the Python API, on a small LSTM, with each optimizer."""
    import mnist_clip as mc

    data = first_digits(mnist_5k, BATCH, 16)
    small = dict(model="lstm", hidden=(WIDTH,), epochs=1, batch_size=BATCH, input_scale=255.0, progress="quiet",
                 data=data, out=tmp_path)
    run = mc.train(name="one", tensorboard=True, optimizer="rmsprop", **small)
    assert run.run.status == "completed" and run.run.steps == 1
    assert {f"dc{t}" for t in range(1, 29)} <= set(run.metrics.columns)
    assert sorted(path.name for path in (run.path / "plots").iterdir()) == sorted(
        f"{name}.png" for name in run.figures())
    assert any((run.path / "tensorboard").rglob("events.out.tfevents.*"))
    demo = mc.demo(name="twins", seeds=2, optimizer="rmsprop", plots=False, **small)
    assert [r.config["clip"] for r in demo.runs] == ["global_norm", "none"] * 2
    assert all(r.run.status == "completed" for r in demo.runs)
    methods = ["value", "agc", "autoclip"]
    sweep = mc.sweep({"clip": methods}, name="grid", optimizer="adam", **small)
    assert sorted(sweep.table["clip"]) == sorted(methods) and set(sweep.table["status"]) == {"completed"}
    cures = mc.cures(cure="lower_lr", name="cure", optimizer="rmsprop", **small)
    assert list(cures.table["cure"]) == ["base", "lower_lr"]
    table, _ = mc.compare([demo.runs[0], demo.runs[1], run], out=tmp_path / "compared")
    assert len(table) == 3 and (tmp_path / "compared" / "compare.png").stat().st_size > 10_000
