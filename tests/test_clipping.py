"""Each clipping method against TensorFlow's own function and against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from mnist_clip.clipping import CLIP_FUNCTIONS, clip_by_average_norm, clip_fired, clip_with_norms, clipped_norms
from mnist_clip.model import init_params, one_hot, prepare_inputs


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
