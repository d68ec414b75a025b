"""The compiled loop against an independent NumPy backward pass and a plain eager loop."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import small_dataset

from mnist_clip.config import PARAM_NAMES, Config
from mnist_clip.nn.model import init_params, one_hot, prepare_inputs
from mnist_clip.runs.schema import STEP_VALUE_COLUMNS
from mnist_clip.training.clipping import CLIP_FUNCTIONS
from mnist_clip.training.step import Trainer, step_values, train_epochs


def numpy_backward(params: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """Forward and backward pass of the MSE loss in float64, written out by hand."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = x.astype(np.float64)
    z1 = x @ p["w1"] + p["b1"]
    h1 = np.maximum(z1, 0)
    z2 = h1 @ p["w2"] + p["b2"]
    h2 = np.maximum(z2, 0)
    out = h2 @ p["w3"] + p["b3"]
    batch = len(x)
    loss = np.mean(np.mean((y - out) ** 2, axis=1))
    d_out = 2 * (out - y) / (batch * out.shape[1])
    d_z2 = (d_out @ p["w3"].T) * (z2 > 0)
    d_z1 = (d_z2 @ p["w2"].T) * (z1 > 0)
    grads = {
        "w3": h2.T @ d_out, "b3": d_out.sum(0),
        "w2": h1.T @ d_z2, "b2": d_z2.sum(0),
        "w1": x.T @ d_z1, "b1": d_z1.sum(0),
    }
    return {
        "loss": loss,
        "grads": grads,
        "deltas": (d_z1, d_z2, d_out),
        "dead": (np.all(h1 <= 0, axis=0).mean(), np.all(h2 <= 0, axis=0).mean()),
    }


def test_step_zero_norms_match_numpy_on_real_digits(mnist_5k):
    params = init_params(1234)
    x = prepare_inputs(mnist_5k.x_train[:128], 50.0)
    y = one_hot(mnist_5k.y_train[:128])
    _, finite, values, _ = step_values(params, tf.constant(x), tf.constant(y), "global_norm", 15.0)
    got = dict(zip(STEP_VALUE_COLUMNS, values.numpy().astype(np.float64)))
    ref = numpy_backward({k: v.numpy() for k, v in params.items()}, x, y)
    assert bool(finite)
    assert np.isclose(got["loss"], ref["loss"], rtol=1e-5)
    before = {name: np.linalg.norm(ref["grads"][name]) for name in PARAM_NAMES}
    global_before = np.sqrt(sum(n**2 for n in before.values()))
    assert global_before > 15  # the reference's first observation: early gradients are large
    scale = min(1.0, 15.0 / global_before)
    for name in PARAM_NAMES:
        assert np.isclose(got[f"{name}_before"], before[name], rtol=1e-4), name
        assert np.isclose(got[f"{name}_after"], before[name] * scale, rtol=1e-4), name
        assert got[f"{name}_clipped"] == 1.0
    assert np.isclose(got["global_norm_before"], global_before, rtol=1e-4)
    assert np.isclose(got["global_norm_after"], 15.0, rtol=1e-5)
    assert got["clipped"] == 1.0
    for i, delta in enumerate(ref["deltas"], start=1):
        assert np.isclose(got[f"delta{i}"], np.linalg.norm(delta), rtol=1e-4)
    assert np.isclose(got["dead_h1"], ref["dead"][0]) and np.isclose(got["dead_h2"], ref["dead"][1])


def test_after_norms_are_before_times_min_one_and_threshold_over_global(small):
    trainer = Trainer(Config(epochs=1, clip_norm=2.0), small)
    values = trainer.run_epoch(0).values
    col = {name: values[:, STEP_VALUE_COLUMNS.index(name)].astype(np.float64) for name in STEP_VALUE_COLUMNS}
    scale = np.minimum(1.0, 2.0 / col["global_norm_before"])
    for name in PARAM_NAMES:
        np.testing.assert_allclose(col[f"{name}_after"], col[f"{name}_before"] * scale, rtol=2e-5)
    np.testing.assert_allclose(col["global_norm_after"], np.minimum(col["global_norm_before"], 2.0), rtol=2e-5)
    assert set(np.unique(col["clipped"])) <= {0.0, 1.0}
    np.testing.assert_array_equal(col["clipped"] == 1.0, col["global_norm_before"] > 2.0)


def eager_reference_loop(config: Config, dataset, steps: int) -> tuple[np.ndarray, dict]:
    """The tutorial's loop as written: a tape per step, clip, apply, norms pulled every step."""
    params = init_params(config.seed)
    variables = [params[name] for name in PARAM_NAMES]
    x_all = prepare_inputs(dataset.x_train, config.input_scale)
    y_all = one_hot(dataset.y_train)
    history = []

    def clip_fn(grads, threshold):
        if config.clip == "agc":  # optax.adaptive_grad_clip's rule, in eager TensorFlow
            out = []
            for g, w in zip(grads, variables):
                axis = None if len([d for d in g.shape if d != 1]) <= 1 else 0
                g_norm = tf.sqrt(tf.reduce_sum(g * g, axis=axis, keepdims=True))
                max_norm = threshold * tf.maximum(tf.sqrt(tf.reduce_sum(w * w, axis=axis, keepdims=True)), 1e-3)
                out.append(tf.where(g_norm < max_norm, g, g * max_norm / tf.maximum(g_norm, 1e-6)))
            return out
        if config.clip == "autoclip":  # the authors' code: numpy.percentile of every norm so far
            history.append(float(tf.linalg.global_norm(grads)))
            return tf.clip_by_global_norm(grads, np.percentile(history, config.clip_percentile))[0]
        return CLIP_FUNCTIONS[config.clip](grads, threshold)

    rows = []
    batches = tf.data.Dataset.from_tensor_slices((x_all, y_all)).batch(config.batch_size).repeat()
    for step, (x, y) in zip(range(steps), batches):
        with tf.GradientTape() as tape:
            h1 = tf.nn.relu(x @ params["w1"] + params["b1"])
            h2 = tf.nn.relu(h1 @ params["w2"] + params["b2"])
            out = h2 @ params["w3"] + params["b3"]
            loss = tf.reduce_mean(tf.reduce_mean(tf.square(y - out), axis=1))
        grads = tape.gradient(loss, variables)
        clipped = clip_fn(grads, config.clip_norm)
        for name, variable, grad in zip(PARAM_NAMES, variables, clipped):
            if name in config.trainable:
                variable.assign_sub(config.lr * grad)
        rows.append([float(loss)] + [float(tf.norm(g)) for pair in zip(grads, clipped) for g in pair])
    return np.array(rows), {name: v.numpy() for name, v in params.items()}


@pytest.mark.parametrize(
    "config",
    [
        Config(epochs=2, clip_norm=3.0),
        Config(epochs=2, clip="norm", clip_norm=0.5),
        Config(epochs=2, clip="value", clip_norm=0.002),
        Config(epochs=2, clip="average_norm", clip_norm=1e-4),
        Config(epochs=2, clip="none", lr=0.005),
        Config(epochs=2, clip_norm=3.0, train=("w3", "b3")),
        Config(epochs=2, clip="agc", clip_norm=0.01),
        Config(epochs=2, clip="autoclip", clip_percentile=30.0),
    ],
    ids=["global_norm", "norm", "value", "average_norm", "none", "partial", "agc", "autoclip"],
)
def test_compiled_chunks_equal_the_eager_loop(config, small):
    trainer = Trainer(config, small)
    results = list(train_epochs(trainer))
    values = np.concatenate([r.values for r in results])
    columns = ["loss"] + [f"{n}_{w}" for n in PARAM_NAMES for w in ("before", "after")]
    mine = values[:, [STEP_VALUE_COLUMNS.index(c) for c in columns]]
    reference, final = eager_reference_loop(config, small, len(values))
    assert len(values) == 2 * 3  # 300 examples in batches of 128: 128, 128, 44
    np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-7)
    for name in PARAM_NAMES:
        np.testing.assert_allclose(trainer.params[name].numpy(), final[name], rtol=1e-4, atol=5e-7)  # weights ~0.1


@pytest.fixture(scope="module")
def full_batches():
    """384 examples: three full batches an epoch, where a shorter last batch is not what a test
    is about."""
    return small_dataset(n_train=384)


def test_frozen_tensors_stay_bit_identical_and_trained_ones_move(full_batches):
    trainer = Trainer(Config(epochs=2, freeze=("w1", "b1")), full_batches)
    list(train_epochs(trainer))
    for name in PARAM_NAMES:
        same = np.array_equal(trainer.params[name].numpy(), trainer.initial_params[name])
        assert same == (name in ("w1", "b1")), name


def test_nonfinite_step_stops_the_run_without_applying_it(small):
    trainer = Trainer(Config(epochs=3, clip="none", lr=1e4), small)
    results = list(train_epochs(trainer))
    values = np.concatenate([r.values for r in results])
    loss = values[:, STEP_VALUE_COLUMNS.index("loss")]
    assert not np.isfinite(loss[-1]) or not np.isfinite(values[-1, STEP_VALUE_COLUMNS.index("global_norm_before")])
    assert np.isfinite(values[:-1]).all()
    assert len(values) < 9 and not results[-1].finished
    for name in PARAM_NAMES:  # the bad update was not applied
        assert np.isfinite(trainer.params[name].numpy()).all()


def test_continue_keeps_running_after_nonfinite(full_batches):
    trainer = Trainer(Config(epochs=3, clip="none", lr=1e4, on_nonfinite="continue"), full_batches)
    values = np.concatenate([r.values for r in train_epochs(trainer)])
    assert len(values) == 9
    assert not np.isfinite(values[-1, STEP_VALUE_COLUMNS.index("loss")])


def test_shuffle_changes_order_per_epoch_but_is_seeded(small):
    def losses(config):
        return np.concatenate([r.values[:, 0] for r in train_epochs(Trainer(config, small))])

    plain = losses(Config(epochs=2))
    shuffled = losses(Config(epochs=2, shuffle=True))
    assert np.array_equal(shuffled, losses(Config(epochs=2, shuffle=True)))
    assert not np.allclose(plain, shuffled)


def test_a_nonfinite_last_step_of_a_chunk_still_stops_the_run(small):
    # batch = the whole set: every chunk is one step, so the bad step is always a chunk's last
    trainer = Trainer(Config(epochs=30, batch_size=300, clip="none", lr=3e3), small)
    results = list(train_epochs(trainer))
    values = np.concatenate([r.values for r in results])
    finite = np.isfinite(values[:, STEP_VALUE_COLUMNS.index("loss")]) & np.isfinite(
        values[:, STEP_VALUE_COLUMNS.index("global_norm_before")])
    assert len(values) < 30 and not finite[-1] and finite[:-1].all()
    assert not results[-1].finished and all(r.finished for r in results[:-1])


def numpy_any_depth(params: dict, x: np.ndarray, y: np.ndarray, activation: str) -> dict:
    """Forward and backward pass of an MLP of any depth in float64, as EXPERIMENT.md writes it."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    n_layers = len(p) // 2
    act = {"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh}[activation]
    derivative = {
        "relu": lambda z: (z > 0).astype(np.float64),
        "sigmoid": lambda z: act(z) * (1 - act(z)),
        "tanh": lambda z: 1 - np.tanh(z) ** 2,
    }[activation]
    hs, zs = [x.astype(np.float64)], []
    for layer in range(1, n_layers + 1):
        zs.append(hs[-1] @ p[f"w{layer}"] + p[f"b{layer}"])
        if layer < n_layers:
            hs.append(act(zs[-1]))
    out = zs[-1]
    deltas = [2 * (out - y) / out.size]
    for layer in range(n_layers - 1, 0, -1):
        deltas.insert(0, (deltas[0] @ p[f"w{layer + 1}"].T) * derivative(zs[layer - 1]))
    grads = {}
    for layer in range(1, n_layers + 1):
        grads[f"w{layer}"] = hs[layer - 1].T @ deltas[layer - 1]
        grads[f"b{layer}"] = deltas[layer - 1].sum(0)
    if activation == "relu":
        inactive = [np.all(h <= 0, axis=0).mean() for h in hs[1:]]
    else:
        limit = 0.01 * (0.25 if activation == "sigmoid" else 1.0)
        inactive = [np.all(derivative(z) < limit, axis=0).mean() for z in zs[:-1]]
    return {"loss": np.mean((y - out) ** 2), "grads": grads, "deltas": deltas, "inactive": inactive}


@pytest.mark.parametrize("hidden, activation, init, input_scale", [
    ((64, 32, 32, 16), "sigmoid", "reference", 50.0),
    ((48, 48, 48), "tanh", "glorot", 50.0),
    ((40, 30, 20, 10, 10), "relu", "he", 255.0),
    ((), "relu", "reference", 50.0),
], ids=["sigmoid-4", "tanh-3-glorot", "relu-5-he", "linear"])
def test_any_depth_step_matches_numpy(mnist_5k, hidden, activation, init, input_scale):
    from mnist_clip.runs.schema import gradient_columns

    config = Config(hidden=hidden, activation=activation, init=init, clip_norm=0.05, input_scale=input_scale)
    params = init_params(config.seed, hidden, init)
    x = prepare_inputs(mnist_5k.x_train[:128], input_scale)
    y = one_hot(mnist_5k.y_train[:128])
    _, _, values, _ = step_values(params, tf.constant(x), tf.constant(y), "global_norm", 0.05, activation)
    columns = gradient_columns(config.net, "global_norm")  # what is known before the update
    got = dict(zip(columns, values.numpy().astype(np.float64)))
    assert len(columns) == len(values.numpy())
    ref = numpy_any_depth({k: v.numpy() for k, v in params.items()}, x, y, activation)
    assert np.isclose(got["loss"], ref["loss"], rtol=1e-5)
    before = {name: np.linalg.norm(ref["grads"][name]) for name in config.param_names}
    global_before = np.sqrt(sum(n**2 for n in before.values()))
    scale = min(1.0, 0.05 / global_before)
    for name in config.param_names:
        assert np.isclose(got[f"{name}_before"], before[name], rtol=1e-3, atol=1e-12), name
        assert np.isclose(got[f"{name}_after"], before[name] * scale, rtol=1e-3, atol=1e-12), name
    for layer, delta in enumerate(ref["deltas"], start=1):
        assert np.isclose(got[f"delta{layer}"], np.linalg.norm(delta), rtol=1e-3, atol=1e-12), layer
    prefix = "dead" if activation == "relu" else "saturated"
    for layer, fraction in enumerate(ref["inactive"], start=1):
        assert np.isclose(got[f"{prefix}_h{layer}"], fraction, atol=1 / 64), layer
    assert len(ref["inactive"]) == len(hidden)
    if activation == "sigmoid":  # the deep sigmoid net's first layer gets far less than its last
        assert before["w1"] < 0.05 * before[f"w{config.n_layers}"]


def test_deep_compiled_chunks_equal_an_eager_loop(small):
    config = Config(epochs=2, hidden=(32, 32, 32), activation="tanh", init="glorot", clip="norm", clip_norm=0.05)
    trainer = Trainer(config, small)
    values = np.concatenate([r.values for r in train_epochs(trainer)])
    params = init_params(config.seed, config.hidden, config.init)
    x_all, y_all = prepare_inputs(small.x_train, 50.0), one_hot(small.y_train)
    rows = []
    for step in range(len(values)):
        start = (step % 3) * 128
        x, y = tf.constant(x_all[start : start + 128]), tf.constant(y_all[start : start + 128])
        with tf.GradientTape() as tape:
            h = x
            for layer in range(1, 5):
                z = h @ params[f"w{layer}"] + params[f"b{layer}"]
                h = tf.tanh(z) if layer < 4 else z
            loss = tf.reduce_mean(tf.reduce_mean(tf.square(y - h), axis=1))
        grads = tape.gradient(loss, list(params.values()))
        clipped = [tf.clip_by_norm(g, 0.05) for g in grads]
        for variable, grad in zip(params.values(), clipped):
            variable.assign_sub(0.01 * grad)
        rows.append([float(loss)] + [float(tf.norm(g)) for pair in zip(grads, clipped) for g in pair])
    columns = ["loss"] + [f"{n}_{w}" for n in config.param_names for w in ("before", "after")]
    mine = values[:, [trainer.columns.index(c) for c in columns]]
    np.testing.assert_allclose(mine, np.array(rows), rtol=1e-4, atol=1e-7)
