"""GradientProbe on real digits: its norms against an independent GradientTape, training unchanged
by watching, a custom loop's folder equal to fit's, a NaN step held back, the readers, the refusals."""

import csv
import io
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from runfolders import write_run

import mnist_clip as mc
from mnist_clip.cli import cli
from mnist_clip.probe import GradientProbe
from mnist_clip.viz.registry import figures_for

LOSS = keras.losses.CategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def digits(mnist_5k):
    """256 real digits, scaled to 0..1, one-hot labels."""
    x = mnist_5k.x_train[:256].astype("float32").reshape(-1, 28, 28, 1) / 255.0
    y = keras.utils.to_categorical(mnist_5k.y_train[:256], 10).astype("float32")
    return x, y


def cnn():
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv"),
                             keras.layers.BatchNormalization(name="norm"), keras.layers.Flatten(),
                             keras.layers.Dense(10, name="dense")],
                            name="cnn")


def two_branch():
    image = keras.Input((28, 28, 1), name="image")
    flat = keras.layers.Flatten()(image)
    left = keras.layers.Dense(8, activation="tanh", name="left")(flat)
    right = keras.layers.Dense(8, activation="relu", name="right")(flat)
    return keras.Model(image, keras.layers.Dense(10, name="out")(keras.layers.concatenate([left, right])),
                       name="branches")


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.flatten = keras.layers.Flatten()
        self.hidden = keras.layers.Dense(12, activation="relu")
        self.out = keras.layers.Dense(10)

    def call(self, x):
        return self.out(self.hidden(self.flatten(x)))


def mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(16, activation="relu", name="hidden"), keras.layers.Dense(10, name="out")],
                            name="mlp")


def tape_gradients(model, x, y):
    with tf.GradientTape() as tape:
        loss = LOSS(y, model(x, training=True))
    return loss, tape.gradient(loss, model.trainable_variables)


def l2(t):
    return float(np.linalg.norm(np.asarray(t, np.float64)))


@pytest.mark.parametrize("make, optimizer, reference", [
    (cnn, lambda: keras.optimizers.Adam(1e-2, global_clipnorm=0.5),
     lambda g: tf.clip_by_global_norm(g, 0.5)[0]),
    (two_branch, lambda: keras.optimizers.SGD(0.1, clipnorm=0.05), lambda g: [tf.clip_by_norm(t, 0.05) for t in g]),
    (Subclassed, lambda: keras.optimizers.RMSprop(1e-3, clipvalue=0.002),
     lambda g: [tf.clip_by_value(t, -0.002, 0.002) for t in g]),
], ids=["sequential-cnn-global_clipnorm", "functional-clipnorm", "subclassed-clipvalue"])
def test_first_step_norms_match_an_independent_tape(tmp_path, digits, make, optimizer, reference):
    x, y = digits[0][:64], digits[1][:64]
    keras.utils.set_random_seed(3)
    model = make()
    model(x[:1])
    initial = [v.numpy() for v in model.trainable_variables]
    loss, grads = tape_gradients(model, x, y)
    clipped = reference(grads)
    probe = GradientProbe(out=tmp_path, name="run", plots=False, verbose=False)
    model.compile(optimizer=probe.wrap(optimizer()), loss=LOSS)
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, callbacks=[probe], verbose=0)
    row = probe.run.metrics.iloc[0]
    paths = [v.path for v in model.trainable_variables]
    assert row["loss"] == pytest.approx(float(loss), rel=1e-5)
    for path, grad, after, start, end in zip(paths, grads, clipped, initial, model.trainable_variables):
        assert row[f"{path}_before"] == pytest.approx(l2(grad), rel=1e-5, abs=1e-9)
        assert row[f"{path}_after"] == pytest.approx(l2(after), rel=1e-4, abs=1e-9)
        assert row[f"{path}_update"] == pytest.approx(l2(end.numpy() - start), rel=1e-4, abs=1e-9)
        assert row[f"{path}_clipped"] == int(not np.allclose(after, grad, rtol=1e-6, atol=0))
    assert row["global_norm_before"] == pytest.approx(float(tf.linalg.global_norm(grads)), rel=1e-5)
    assert row["global_norm_after"] == pytest.approx(float(tf.linalg.global_norm(clipped)), rel=1e-4)
    config = probe.run.config
    assert [v["path"] for v in config["keras_model"]["variables"]] == paths
    assert config["clip"] == {"Adam": "global_norm", "SGD": "norm", "RMSprop": "value"}[type(
        model.optimizer.inner_optimizer).__name__]


def test_config_names_each_variable_role_and_layer(tmp_path, digits):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.LSTM(4, name="lstm"),
                              keras.layers.BatchNormalization(name="batch_normalization"),
                              keras.layers.Dense(10, name="dense")], name="lstm")
    probe = GradientProbe(out=tmp_path, name="run", plots=False, verbose=False)
    model.compile(optimizer=probe.wrap(keras.optimizers.SGD(0.01)), loss=LOSS)
    model.fit(digits[0][:32, :, :, 0], digits[1][:32], batch_size=32, epochs=1, callbacks=[probe], verbose=0)
    described = {v["path"]: (v["role"], v["layer_index"], v["shape"]) for v in probe.run.config["keras_model"]["variables"]}
    assert described == {
        "lstm/lstm/lstm_cell/kernel": ("kernel", 1, [28, 16]),
        "lstm/lstm/lstm_cell/recurrent_kernel": ("recurrent kernel", 1, [4, 16]),
        "lstm/lstm/lstm_cell/bias": ("bias", 1, [16]),
        "lstm/batch_normalization/gamma": ("gamma", 2, [4]),
        "lstm/batch_normalization/beta": ("beta", 2, [4]),
        "lstm/dense/kernel": ("kernel", 3, [4, 10]),
        "lstm/dense/bias": ("bias", 3, [10]),
    }
    assert probe.run.config["clip"] == "none" and probe.run.config["optimizer"] == "sgd"


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.Adam(1e-2, global_clipnorm=0.5),
    lambda: keras.optimizers.SGD(0.1, clipnorm=0.1),
    lambda: keras.optimizers.RMSprop(1e-3, clipvalue=0.001),
], ids=["adam-global_clipnorm", "sgd-clipnorm", "rmsprop-clipvalue"])
def test_watching_does_not_change_training(tmp_path, digits, optimizer):
    x, y = digits
    plain = mlp()
    plain.compile(optimizer=optimizer(), loss=LOSS)
    plain.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0)
    watched = mlp()
    probe = GradientProbe(out=tmp_path, name="run", plots=False, verbose=False)
    watched.compile(optimizer=probe.wrap(optimizer()), loss=LOSS)
    watched.fit(x, y, batch_size=64, epochs=2, shuffle=False, callbacks=[probe], verbose=0)
    for a, b in zip(plain.trainable_variables, watched.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert len(probe.run.metrics) == 8 and probe.run.summary["status"] == "completed"
    final = np.load(probe.run.path / "params_final.npz")
    np.testing.assert_array_equal(final["mlp/hidden/kernel"], watched.trainable_variables[0].numpy())


def test_a_custom_loop_writes_the_folder_fit_writes(tmp_path, digits):
    x, y = digits
    fitted = mlp()
    by_fit = GradientProbe(out=tmp_path, name="fit", clip="global_norm", clip_norm=1.0, plots=False, verbose=False)
    fitted.compile(optimizer=by_fit.wrap(keras.optimizers.SGD(0.1)), loss=LOSS)
    fitted.fit(x, y, batch_size=64, epochs=2, shuffle=False, callbacks=[by_fit], verbose=0)

    model = mlp()
    by_loop = GradientProbe(out=tmp_path, name="loop", clip="global_norm", clip_norm=1.0, plots=False, verbose=False)
    optimizer = by_loop.wrap(keras.optimizers.SGD(0.1))

    @tf.function
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = by_loop.record_loss(LOSS(yb, model(xb, training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    with by_loop.watch(model, epochs=2, loss=LOSS):
        for epoch in range(2):
            for start in range(0, len(x), 64):
                train_step(x[start:start + 64], y[start:start + 64])
            by_loop.end_epoch()
    a, b = by_fit.run, by_loop.run
    assert list(a.metrics.columns) == list(b.metrics.columns)
    np.testing.assert_allclose(a.metrics.to_numpy(), b.metrics.to_numpy(), rtol=1e-5, atol=1e-7)
    assert a.metrics["clipped"].sum() > 0
    assert {k: v for k, v in a.config.items() if k != "keras_model"} == {k: v for k, v in b.config.items()
                                                                         if k != "keras_model"}
    for name in np.load(a.path / "params_final.npz").files:
        np.testing.assert_allclose(np.load(a.path / "params_final.npz")[name], np.load(b.path / "params_final.npz")[name],
                                   rtol=1e-5, atol=1e-7)
    assert a.summary["status"] == b.summary["status"] == "completed"


class NaNAt(keras.layers.Layer):
    """Passes its input through, except at training call number `at` (from 0), where it returns NaN."""

    def __init__(self, at, **kwargs):
        super().__init__(**kwargs)
        self.at = at
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

    def call(self, x, training=False):
        if not training:
            return x
        now = tf.identity(self.calls.value)  # read before the count goes up
        self.calls.assign_add(1.0)
        return x + tf.where(tf.equal(now, float(self.at)), np.float32("nan"), np.float32(0.0))


def test_a_nan_step_is_not_applied_and_is_diagnosed(tmp_path, digits):
    x, y = digits
    at = 5

    def build(with_nan):
        keras.utils.set_random_seed(7)
        layers = [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu", name="hidden")]
        layers += [NaNAt(at, name="nan_maker")] if with_nan else []
        return keras.Sequential(layers + [keras.layers.Dense(10, name="out")], name="net")

    plain = build(False)
    plain.compile(optimizer=keras.optimizers.Adam(1e-2), loss=LOSS)
    plain.fit(x[: at * 32], y[: at * 32], batch_size=32, epochs=1, shuffle=False, verbose=0)  # steps 0 .. at-1

    model = build(True)
    probe = GradientProbe(out=tmp_path, name="nan", plots=False, verbose=False)
    model.compile(optimizer=probe.wrap(keras.optimizers.Adam(1e-2)), loss=LOSS)
    model.fit(x, y, batch_size=32, epochs=3, shuffle=False, callbacks=[probe], verbose=0)
    run = probe.run
    assert run.summary["status"] == "diverged"
    assert run.summary["first_nonfinite_step"] == at and len(run.metrics) == at + 1
    assert len(run.epochs) == 1  # training stopped after the epoch
    assert np.isnan(run.metrics["loss"].iloc[at]) and np.isfinite(run.metrics["loss"].iloc[: at]).all()
    diagnosis = run.summary["diagnosis"]
    assert diagnosis["first_nonfinite"] == "loss" and diagnosis["first_nonfinite_tensor"] == "net/out/kernel"
    assert "net/out/kernel" in diagnosis["text"][0] and "not applied" in diagnosis["text"][0]
    for a, b in zip(plain.trainable_variables, model.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    inner = model.optimizer.inner_optimizer
    assert int(inner.iterations.numpy()) == at
    for a, b in zip(plain.optimizer.variables, inner.variables):
        np.testing.assert_array_equal(np.asarray(a.numpy()), np.asarray(b.numpy()))


def test_nonfinite_continue_applies_every_step(tmp_path, digits):
    x, y = digits
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), NaNAt(2), keras.layers.Dense(10)])
    probe = GradientProbe(out=tmp_path, name="go-on", on_nonfinite="continue", plots=False, verbose=False)
    model.compile(optimizer=probe.wrap(keras.optimizers.SGD(0.01)), loss=LOSS)
    model.fit(x[:128], y[:128], batch_size=32, epochs=1, shuffle=False, callbacks=[probe], verbose=0)
    assert probe.run.summary["status"] == "diverged" and len(probe.run.metrics) == 4
    assert np.isnan(model.trainable_variables[0].numpy()).all()  # Keras applied the NaN step


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory, mnist_5k):
    x = mnist_5k.x_train[:256].astype("float32").reshape(-1, 28, 28, 1) / 255.0
    y = keras.utils.to_categorical(mnist_5k.y_train[:256], 10)
    out = tmp_path_factory.mktemp("probe")
    keras.utils.set_random_seed(1)
    model = cnn()
    probe = mc.GradientProbe(out=out, name="cnn", plots=False, tensorboard=True, verbose=False)
    model.compile(optimizer=probe.wrap(keras.optimizers.Adam(1e-2, global_clipnorm=1.0)), loss=LOSS)
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, callbacks=[probe], verbose=0, validation_split=0.25)
    return probe.run


def test_plot_compare_and_load_run_read_a_probe_folder(tmp_path, probe_run):
    result = CliRunner().invoke(cli, ["plot", str(probe_run.path)])
    assert result.exit_code == 0, result.output
    drawn_order = [p.rsplit("/", 1)[-1] for p in result.output.split()]
    loaded = mc.load_run(probe_run.path)
    assert "signals.png" not in drawn_order  # a Keras model's layers log no back-propagated signal
    assert loaded.metrics.shape == probe_run.metrics.shape and loaded.summary["status"] == "completed"
    assert list(figures_for(loaded.run)) == drawn_order
    product = write_run(tmp_path / "product", steps=12, steps_per_epoch=6)
    result = CliRunner().invoke(cli, ["compare", str(probe_run.path), str(product), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    table = (tmp_path / "cmp" / "compare.csv").read_text()
    assert "Keras cnn" in table and (tmp_path / "cmp" / "compare.png").is_file()
    row = next(row for row in csv.DictReader(io.StringIO(table)) if row["name"] == "cnn")
    assert row["steps"] == "12"  # its steps: 192 training digits in batches of 32, two epochs
    epochs = probe_run.epochs
    events = list((probe_run.path / "tensorboard").glob("events.out.tfevents.*"))
    tags = {value.tag for event in tf.compat.v1.train.summary_iterator(str(events[0])) for value in event.summary.value}
    assert {"global_norm/before", "grad_norm_before/cnn/dense/kernel", "update/cnn/conv/kernel", "test/loss"} <= tags
    assert np.isfinite(epochs["test_loss"]).all() and (epochs["cnn/dense/kernel_moved"] > 0).all()


def test_refusals_are_one_line(tmp_path, digits):
    with pytest.raises(mc.InputError, match="not a Keras 3 optimizer"):
        GradientProbe(out=tmp_path).wrap(object())
    wrapped = GradientProbe(out=tmp_path).wrap(keras.optimizers.SGD(0.1))
    with pytest.raises(mc.InputError, match="already wrapped"):
        GradientProbe(out=tmp_path).wrap(wrapped)
    with pytest.raises(mc.InputError, match="already wrapped"):
        GradientProbe(out=tmp_path).wrap(wrapped.inner_optimizer)
    with pytest.raises(mc.InputError, match="clip: given twice"):
        GradientProbe(out=tmp_path, clip="norm", clip_norm=1.0).wrap(keras.optimizers.Adam(global_clipnorm=1.0))
    with pytest.raises(mc.InputError, match="LossScaleOptimizer"):
        GradientProbe(out=tmp_path).wrap(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()))
    with pytest.raises(mc.InputError, match="clip"):
        GradientProbe(out=tmp_path, clip="sometimes")
    x, y = digits[0][:32], digits[1][:32]
    model = mlp()
    probe = GradientProbe(out=tmp_path, name="once", plots=False, verbose=False)
    model.compile(optimizer=probe.wrap(keras.optimizers.SGD(0.1)), loss=LOSS)
    model.fit(x, y, batch_size=32, epochs=1, callbacks=[probe], verbose=0)
    with pytest.raises(mc.InputError, match="already exists.*overwrite"):
        model.fit(x, y, batch_size=32, epochs=1, callbacks=[probe], verbose=0)
    for error in (mc.InputError,):
        message = str(pytest.raises(error, GradientProbe(out=tmp_path).wrap, object()).value)
        assert "\n" not in message
    again = GradientProbe(out=tmp_path, name="once", overwrite=True, plots=False, verbose=False)
    model.compile(optimizer=again.wrap(keras.optimizers.SGD(0.1)), loss=LOSS)
    model.fit(x, y, batch_size=32, epochs=2, callbacks=[again], verbose=0)
    assert json.loads((tmp_path / "once" / "summary.json").read_text())["steps"] == 2
