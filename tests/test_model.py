"""The MLP: shapes, parameter count, and the reference's initialisation draw for draw."""

import numpy as np
import pytest
import tensorflow as tf

from mnist_clip.nn.model import forward, init_params, layer_seed, mse_loss, one_hot, prepare_inputs


def test_shapes_and_parameter_count():
    params = init_params(1234)
    shapes = {name: tuple(v.shape) for name, v in params.items()}
    assert shapes == {
        "w1": (784, 256), "b1": (256,), "w2": (256, 128), "b2": (128,), "w3": (128, 10), "b3": (10,),
    }
    assert sum(int(np.prod(s)) for s in shapes.values()) == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10 == 235146
    out = forward(params, tf.zeros([5, 784])).out
    assert out.shape == (5, 10)


def test_init_matches_the_reference_code():
    # The reference's own lines, run after the same global seed.
    tf.random.set_seed(1234)
    reference = [
        tf.Variable(tf.random.truncated_normal([784, 256], stddev=0.1)), tf.Variable(tf.zeros([256])),
        tf.Variable(tf.random.truncated_normal([256, 128], stddev=0.1)), tf.Variable(tf.zeros([128])),
        tf.Variable(tf.random.truncated_normal([128, 10], stddev=0.1)), tf.Variable(tf.zeros([10])),
    ]
    params = init_params(1234)
    for mine, theirs in zip(params.values(), reference):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    w1 = params["w1"].numpy()
    assert np.abs(w1).max() <= 0.2 + 1e-6  # truncated at two standard deviations
    assert 0.07 < w1.std() < 0.1
    assert not np.array_equal(w1, init_params(1235)["w1"].numpy())


def test_loss_is_mean_of_mean_squared_error():
    y = one_hot(np.array([3, 7]))
    out = np.arange(20, dtype=np.float32).reshape(2, 10) / 10
    expected = np.mean(np.mean((y - out) ** 2, axis=1))
    assert np.isclose(float(mse_loss(tf.constant(y), tf.constant(out))), expected)


def test_inputs_are_divided_by_the_scale():
    images = np.full((2, 28, 28), 255, np.uint8)
    x = prepare_inputs(images, 50.0)
    assert x.shape == (2, 784) and x.dtype == np.float32
    assert np.allclose(x, 5.1)


def test_any_depth_has_the_named_tensors_and_shapes():
    params = init_params(3, hidden=(32, 16, 8), init="he")
    assert {name: tuple(v.shape) for name, v in params.items()} == {
        "w1": (784, 32), "b1": (32,), "w2": (32, 16), "b2": (16,), "w3": (16, 8), "b3": (8,), "w4": (8, 10), "b4": (10,),
    }
    assert forward(params, tf.zeros([4, 784]), "tanh").out.shape == (4, 10)
    linear = init_params(3, hidden=())
    assert list(linear) == ["w1", "b1"] and forward(linear, tf.zeros([2, 784])).hs == []


def test_reference_init_at_any_depth_draws_in_the_reference_order():
    tf.random.set_seed(99)
    expected = [tf.random.truncated_normal(shape, stddev=0.1) for shape in ([784, 64], [64, 64], [64, 64], [64, 10])]
    params = init_params(99, hidden=(64, 64, 64))
    for layer, want in enumerate(expected, start=1):
        np.testing.assert_array_equal(params[f"w{layer}"].numpy(), want.numpy())
        assert not params[f"b{layer}"].numpy().any()


@pytest.mark.parametrize("init, initializer", [("glorot", "GlorotNormal"), ("he", "HeNormal")])
def test_glorot_and_he_are_keras_initializers_with_per_layer_seeds(init, initializer):
    import keras

    params = init_params(1234, hidden=(128, 64), init=init)
    for layer, shape in enumerate([(784, 128), (128, 64), (64, 10)], start=1):
        reference = getattr(keras.initializers, initializer)(seed=layer_seed(1234, layer))(shape)
        np.testing.assert_array_equal(params[f"w{layer}"].numpy(), np.asarray(reference))
        fan_in, fan_out = shape
        std = np.sqrt(2 / (fan_in + fan_out)) if init == "glorot" else np.sqrt(2 / fan_in)
        assert 0.85 * std < params[f"w{layer}"].numpy().std() < 1.15 * std  # the formula of EXPERIMENT.md
        assert not params[f"b{layer}"].numpy().any()
    other_seed = init_params(1235, hidden=(128, 64), init=init)
    assert not any(np.array_equal(params[f"w{i}"].numpy(), other_seed[f"w{j}"].numpy())
                   for i in (2,) for j in (1, 2, 3) if params[f"w{i}"].shape == other_seed[f"w{j}"].shape)
