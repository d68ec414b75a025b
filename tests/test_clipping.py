"""Each clipping method against TensorFlow's own function and against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from mnist_clip.nn.model import init_params, one_hot, prepare_inputs
from mnist_clip.training.clipping import (
    CLIP_FUNCTIONS,
    AutoClipHistory,
    agc_clip,
    clip_by_average_norm,
    clip_fired,
    clip_step,
    clip_with_norms,
    clipped_norms,
)
from mnist_clip.training.methods import METHODS, clip_label, compared_with_threshold


def tensor_cases():
    rng = np.random.default_rng(7)
    return {
        "random": [rng.normal(size=(30, 20)), rng.normal(size=20)],
        "huge": [rng.normal(size=(10, 10)) * 1e15, rng.normal(size=5) * 1e12],
        "tiny": [rng.normal(size=(10, 10)) * 1e-20, rng.normal(size=5) * 1e-30],
        "zeros": [np.zeros((8, 4)), np.zeros(4)],
        "mixed": [np.zeros((3, 3)), rng.normal(size=7) * 100, rng.normal(size=(2, 2)) * 1e-8],
    }


def as_tensors(arrays):
    return [tf.constant(a, tf.float32) for a in arrays]


@pytest.mark.parametrize("case", list(tensor_cases()))
@pytest.mark.parametrize("threshold", [0.5, 15.0])
def test_each_method_equals_tensorflow(case, threshold):
    grads = as_tensors(tensor_cases()[case])
    expected = {
        "global_norm": tf.clip_by_global_norm(grads, threshold)[0],
        "norm": [tf.clip_by_norm(g, threshold) for g in grads],
        "value": [tf.clip_by_value(g, -threshold, threshold) for g in grads],
        "average_norm": [tf.compat.v1.clip_by_average_norm(g, threshold) for g in grads],
        "none": grads,
    }
    norms = [tf.norm(g) for g in grads]
    for method, want in expected.items():
        for got in (CLIP_FUNCTIONS[method](grads, threshold), clip_with_norms(method, grads, threshold, norms)):
            for g, w in zip(got, want):
                np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-6, atol=0, err_msg=method)


@pytest.mark.parametrize("case", list(tensor_cases()))
def test_methods_match_their_numpy_definitions(case):
    arrays = [a.astype(np.float64) for a in tensor_cases()[case]]
    c = 0.5
    grads = as_tensors(arrays)
    norms = [np.linalg.norm(a) for a in arrays]
    global_norm = np.sqrt(sum(n**2 for n in norms))
    want = {
        "global_norm": [a * c / max(global_norm, c) for a in arrays],
        "norm": [a * c / max(n, c) for a, n in zip(arrays, norms)],
        "value": [np.clip(a, -c, c) for a in arrays],
        # average norm is l2 / number of elements, not the RMS
        "average_norm": [a * c / max(n / a.size, c) for a, n in zip(arrays, norms)],
    }
    for method, expected in want.items():
        for g, w in zip(CLIP_FUNCTIONS[method](grads, c), expected):
            np.testing.assert_allclose(g.numpy(), w, rtol=2e-6, atol=1e-45, err_msg=method)


def test_average_norm_is_not_the_rms():
    t = tf.constant(np.full((10, 10), 2.0), tf.float32)  # l2 = 20, l2/N = 0.2, RMS = 2
    assert np.allclose(clip_by_average_norm(t, 0.5).numpy(), 2.0)  # 0.2 < 0.5: untouched
    assert np.allclose(clip_by_average_norm(t, 0.1).numpy(), 1.0)  # scaled by 0.1 / 0.2


def test_on_a_real_steps_gradients(mnist_5k):
    params = init_params(1234)
    x = tf.constant(prepare_inputs(mnist_5k.x_train[:128], 50.0))
    y = tf.constant(one_hot(mnist_5k.y_train[:128]))
    with tf.GradientTape() as tape:
        h1 = tf.nn.relu(x @ params["w1"] + params["b1"])
        h2 = tf.nn.relu(h1 @ params["w2"] + params["b2"])
        loss = tf.reduce_mean(tf.reduce_mean(tf.square(y - (h2 @ params["w3"] + params["b3"])), axis=1))
    grads = tape.gradient(loss, list(params.values()))
    checks = {
        "global_norm": (15.0, tf.clip_by_global_norm(grads, 15.0)[0]),
        "norm": (5.0, [tf.clip_by_norm(g, 5.0) for g in grads]),
        "value": (0.01, [tf.clip_by_value(g, -0.01, 0.01) for g in grads]),
        "average_norm": (1e-4, [tf.compat.v1.clip_by_average_norm(g, 1e-4) for g in grads]),
    }
    for method, (threshold, want) in checks.items():
        got = CLIP_FUNCTIONS[method](grads, threshold)
        changed = [not np.array_equal(g.numpy(), o.numpy()) for g, o in zip(got, grads)]
        assert any(changed), method  # each threshold bites on this step
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-6, err_msg=method)


def test_nonfinite_global_norm_gives_nan_like_tensorflow():
    grads = as_tensors([np.array([1.0, np.inf]), np.ones(3)])
    clipped = CLIP_FUNCTIONS["global_norm"](grads, 15.0)
    assert all(np.isnan(c.numpy()).all() for c in clipped)


@pytest.mark.parametrize("case", list(tensor_cases()))
def test_fired_flags_follow_each_methods_condition(case):
    arrays = [a.astype(np.float64) for a in tensor_cases()[case]]
    grads = as_tensors(arrays)
    c = 0.5
    norms = [np.linalg.norm(a) for a in arrays]
    global_norm = np.sqrt(sum(n**2 for n in norms))
    want = {
        "global_norm": [global_norm > c] * len(arrays),
        "norm": [n > c for n in norms],
        "value": [bool(np.any(np.abs(a) > c)) for a in arrays],
        "average_norm": [n / a.size > c for a, n in zip(arrays, norms)],
        "none": [False] * len(arrays),
    }
    for method, expected in want.items():
        got = [bool(f) for f in clip_fired(method, grads, c)]
        assert got == expected, method


def test_a_tensor_under_the_threshold_is_not_reported_as_clipped():
    # t * c / c can differ from t in the last bit; that is not clipping.
    grads = as_tensors([np.random.default_rng(3).normal(size=(50, 50)) * 0.01])
    assert not bool(clip_fired("norm", grads, 5.0)[0])


@pytest.mark.parametrize("case", list(tensor_cases()))
@pytest.mark.parametrize("method", ["global_norm", "norm", "value", "average_norm", "none"])
def test_norms_after_equal_the_norms_of_the_clipped_tensors(case, method):
    grads = as_tensors(tensor_cases()[case])
    for threshold in (1e-3, 0.5, 15.0):
        clipped = CLIP_FUNCTIONS[method](grads, threshold)
        measured = [float(tf.norm(c)) for c in clipped]
        derived = [float(n) for n in clipped_norms(method, clipped, [tf.norm(g) for g in grads], threshold)]
        np.testing.assert_allclose(derived, measured, rtol=2e-6, atol=0, err_msg=f"{method} {threshold}")


def real_gradients_and_params(mnist_5k, steps: int = 0):
    """The reference net's raw gradients on real digits, after `steps` plain SGD steps."""
    params = init_params(1234)
    variables = list(params.values())
    x = tf.constant(prepare_inputs(mnist_5k.x_train[:128], 50.0))
    y = tf.constant(one_hot(mnist_5k.y_train[:128]))
    for step in range(steps + 1):
        with tf.GradientTape() as tape:
            h1 = tf.nn.relu(x @ params["w1"] + params["b1"])
            h2 = tf.nn.relu(h1 @ params["w2"] + params["b2"])
            loss = tf.reduce_mean(tf.square(y - (h2 @ params["w3"] + params["b3"])))
        grads = tape.gradient(loss, variables)
        if step < steps:
            for v, g in zip(variables, tf.clip_by_global_norm(grads, 15.0)[0]):
                v.assign_sub(0.01 * g)
    return grads, [v.read_value() for v in variables]


def numpy_agc(grads, params, clipping, eps=1e-3):
    """Brock et al.'s AGC in float64, with optax's axes and guards."""
    out, fired, fraction, ratio = [], [], [], []
    for g, w in zip(grads, params):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        axis = None if np.squeeze(g).ndim <= 1 else 0
        g_norm = np.sqrt(np.sum(g * g, axis=axis, keepdims=True))
        w_norm = np.maximum(np.sqrt(np.sum(w * w, axis=axis, keepdims=True)), eps)
        max_norm = clipping * w_norm
        keep = g_norm < max_norm
        out.append(np.where(keep, g, g * max_norm / np.maximum(g_norm, 1e-6)))
        fired.append(bool((~keep).any()))
        fraction.append(float((~keep).mean()))
        ratio.append(float((g_norm / w_norm).max()))
    return out, fired, fraction, ratio


@pytest.mark.parametrize("clipping, steps", [(0.01, 0), (0.01, 20), (0.5, 20), (100.0, 0)])
def test_agc_matches_numpy_on_real_gradients(mnist_5k, clipping, steps):
    grads, params = real_gradients_and_params(mnist_5k, steps)
    clipped, fired, fractions, ratios, norms_after, norms_before = agc_clip(grads, params, clipping)
    want, want_fired, want_fraction, want_ratio = numpy_agc(grads, params, clipping)
    for got, expected in zip(clipped, want):
        np.testing.assert_allclose(got.numpy(), expected, rtol=2e-5, atol=1e-12)
        assert got.shape == expected.shape
    assert [bool(f) for f in fired] == want_fired
    np.testing.assert_allclose([float(f) for f in fractions], want_fraction, atol=1e-7)
    np.testing.assert_allclose([float(r) for r in ratios], want_ratio, rtol=1e-5)
    np.testing.assert_allclose([float(n) for n in norms_after], [np.linalg.norm(w) for w in want], rtol=1e-5)
    np.testing.assert_allclose([float(n) for n in norms_before], [np.linalg.norm(g) for g in grads], rtol=1e-5)
    if clipping == 100.0:  # a loose threshold keeps the weights' gradients, not the zero biases'
        assert not any(want_fired[0::2]) and all(want_fired[1::2])
    if clipping == 0.01 and steps == 0:
        assert want_fired[1] and want_fraction[1] == 1.0  # zero biases: every bias unit is clipped at step 0


@pytest.mark.parametrize("clipping", [0.01, 0.2])
def test_agc_equals_optax(mnist_5k, clipping):
    optax = pytest.importorskip("optax")
    grads, params = real_gradients_and_params(mnist_5k, steps=10)
    transform = optax.adaptive_grad_clip(clipping)
    as_numpy = [np.asarray(g) for g in grads]
    updates, _ = transform.update(as_numpy, transform.init(None), [np.asarray(p) for p in params])
    for got, theirs in zip(agc_clip(grads, params, clipping)[0], updates):
        np.testing.assert_allclose(got.numpy(), np.asarray(theirs), rtol=1e-5, atol=1e-12)


def test_autoclip_threshold_is_the_numpy_percentile_of_the_history(small):
    from mnist_clip.config import Config
    from mnist_clip.runs.schema import step_value_columns
    from mnist_clip.training.step import Trainer, train_epochs

    config = Config(clip="autoclip", clip_percentile=25.0, epochs=6, lr=0.01, batch_size=50, input_scale=255.0)
    trainer = Trainer(config, small)
    values = np.concatenate([r.values for r in train_epochs(trainer)]).astype(np.float64)
    columns = step_value_columns(config.net, "autoclip")
    col = {name: values[:, columns.index(name)] for name in columns}
    history = col["global_norm_before"]
    assert len(history) == 36 and np.isfinite(history).all()
    want = np.array([np.percentile(history[: i + 1], 25.0) for i in range(len(history))])
    np.testing.assert_allclose(col["clip_threshold"], want, rtol=1e-5)
    assert col["clipped"][0] == 0  # the first norm is its own percentile: never clipped
    np.testing.assert_array_equal(col["clipped"] == 1, history > col["clip_threshold"])
    np.testing.assert_allclose(col["global_norm_after"], np.minimum(history, col["clip_threshold"]), rtol=2e-5)
    assert 0 < col["clipped"].sum() < len(history)


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_logs_the_columns_it_declares_and_compares_what_it_says(method):
    """clip_step's extra values line up with the declared extra columns, and the declared compared
    quantity, read back from those columns, is what the method tests against its threshold."""
    rng = np.random.default_rng(3)
    arrays = [rng.normal(size=(6, 4)) * 3, rng.normal(size=4), rng.normal(size=(4, 2)) * 0.1]
    names, shapes = ["w1", "b1", "w2"], {"w1": (6, 4), "b1": (4,), "w2": (4, 2)}
    params = [rng.normal(size=a.shape) for a in arrays]
    history = AutoClipHistory(16, 50.0) if method == "autoclip" else None
    threshold = 0.5 if method == "agc" else 2.0
    clipped, fired, before, global_before, after, extra = clip_step(
        method, as_tensors(arrays), as_tensors(params), threshold, history)
    declared = METHODS[method].extra_columns(names)
    assert len(extra) == len(declared)
    columns = {"global_norm_before": np.array([float(global_before)])}
    columns.update({f"{n}_before": np.array([float(b)]) for n, b in zip(names, before)})
    columns.update({c: np.array([float(v)]) for c, v in zip(declared, extra)})
    quantity, series = compared_with_threshold(method, columns.__getitem__, names, shapes)
    norms = [np.linalg.norm(a) for a in arrays]
    want = {  # float64 NumPy, from the gradients themselves
        "global_norm": {"global norm before": np.sqrt(sum(n**2 for n in norms))},
        "autoclip": {"global norm before": np.sqrt(sum(n**2 for n in norms))},
        "none": {"global norm before": np.sqrt(sum(n**2 for n in norms))},
        "norm": dict(zip(names, norms)),
        "average_norm": {n: norm / a.size for n, norm, a in zip(names, norms, arrays)},
        "value": {n: np.abs(a).max() for n, a in zip(names, arrays)},
        "agc": {n: (np.linalg.norm(a, axis=0) / np.maximum(np.linalg.norm(p, axis=0), 1e-3)).max() if a.ndim == 2
                else np.linalg.norm(a) / max(np.linalg.norm(p), 1e-3) for n, a, p in zip(names, arrays, params)},
    }[method]
    assert set(series) == set(want) and isinstance(quantity, str) and quantity
    for label, values in series.items():
        np.testing.assert_allclose(values[0], want[label], rtol=1e-5, err_msg=f"{method} {label}")
    if METHODS[method].per_tensor and method != "agc":  # the tensors over their own threshold are those clipped
        assert [bool(f) for f in fired] == [want[n] > threshold for n in names]
    assert METHODS[method].label({"clip": method, "clip_norm": threshold, "clip_percentile": 10.0}) == clip_label(
        {"clip": method, "clip_norm": threshold, "clip_percentile": 10.0})
