"""Nothing non-finite is committed, and one compiled program runs every batch of a run: steps whose
update is NaN/Inf with finite gradients, and the padded short batch against an eager evaluation."""

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import first_digits

from mnist_clip.config import Config
from mnist_clip.experiment import run_experiment
from mnist_clip.nn import BATCH_NORM_MOMENTUM, NORM_EPSILON
from mnist_clip.nn.model import config_params, init_state, one_hot, prepare_inputs
from mnist_clip.runs.diagnosis import NONFINITE_UPDATE
from mnist_clip.training.finite import written_nonfinite
from mnist_clip.training.optimizers import OptimizerState, UpdateRule
from mnist_clip.training.step import Trainer, make_train_chunk, train_epochs


def unchecked(config: Config, **values) -> Config:
    """The config with values its validation may refuse (a beta that float32 makes 1, a learning
    rate whose step overflows): what the compiled step must survive whatever the front door lets in."""
    for key, value in values.items():
        object.__setattr__(config, key, value)
    return config


@pytest.fixture(scope="module")
def digits(mnist_5k):
    return first_digits(mnist_5k, 256, 64)


def eager_gradients(params: dict, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The reference net's MSE gradients on one batch, by an eager tape."""
    with tf.GradientTape() as tape:
        h1 = tf.nn.relu(x @ params["w1"] + params["b1"])
        h2 = tf.nn.relu(h1 @ params["w2"] + params["b2"])
        out = h2 @ params["w3"] + params["b3"]
        loss = tf.reduce_mean(tf.reduce_mean(tf.square(y - out), axis=1))
    return {name: g.numpy() for name, g in zip(params, tape.gradient(loss, list(params.values())))}


def first_nonfinite(arrays: dict[str, np.ndarray]) -> tuple[str, str]:
    """The first tensor (in parameter order) holding a NaN or Inf, and which of the two."""
    bad = [name for name, a in arrays.items() if not np.isfinite(a).all()]
    assert bad, "the constructed step must write something non-finite"
    name = bad[0]
    return name, "NaN" if np.isnan(arrays[name]).any() else "Inf"


def first_batch(dataset, config: Config):
    x = prepare_inputs(dataset.x_train[: config.batch_size], config.input_scale)
    return x, one_hot(dataset.y_train[: config.batch_size])


@pytest.mark.parametrize("case", ["sgd-huge-lr", "adam-beta1-one"])
def test_a_step_whose_update_is_not_finite_is_not_applied_and_is_named(tmp_path, digits, case):
    if case == "sgd-huge-lr":  # lr x a large but finite gradient leaves float32's range
        config = unchecked(Config(epochs=2, clip="none"), lr=1e38)
    else:  # beta1 is 1.0 in float32: Adam's bias correction divides by 1 - beta1^1 = 0
        config = unchecked(Config(epochs=2, optimizer="adam", lr=0.001), beta1=0.99999999)
    params = config_params(config)
    start = {name: v.numpy() for name, v in params.items()}
    grads = eager_gradients(params, *first_batch(digits, config))
    assert all(np.isfinite(g).all() for g in grads.values())  # the gradients are finite
    lr = np.float32(config.lr)
    if case == "sgd-huge-lr":
        with np.errstate(over="ignore"):
            new = {name: start[name] - grads[name] * lr for name in start}
    else:
        m = {name: g * np.float32(1 - config.beta1) for name, g in grads.items()}
        v = {name: np.square(g) * np.float32(1 - config.beta2) for name, g in grads.items()}
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = lr * np.sqrt(np.float32(1) - np.float32(config.beta2)) / (np.float32(1) - np.float32(config.beta1))
            new = {name: start[name] - m[name] * alpha / (np.sqrt(v[name]) + np.float32(config.epsilon)) for name in start}
    with np.errstate(invalid="ignore"):
        tensor, value = first_nonfinite(new)

    (tmp_path / "run").mkdir()
    run_experiment(config, digits, tmp_path / "run", draw_plots=False)

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["first_nonfinite_step"] == 0 and summary["steps"] == 1
    assert summary["nonfinite_update"] == {"step": 0, "what": "update", "tensor": tensor, "value": value}
    final = np.load(tmp_path / "run" / "params_final.npz")
    for name in start:  # the step was not applied: the last finite parameters, bit for bit
        assert np.isfinite(final[name]).all() and np.array_equal(final[name], start[name]), name
    metrics = np.genfromtxt(tmp_path / "run" / "metrics.csv", delimiter=",", names=True)
    assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["global_norm_before"])
    diagnosis = summary["diagnosis"]
    assert diagnosis["cause"] == NONFINITE_UPDATE and diagnosis["first_nonfinite"] == "update"
    assert f"the update of {tensor} became {value} with finite gradients" in diagnosis["text"][0]
    if case == "adam-beta1-one":
        assert "Adam's bias correction divided by 1 - beta1^t = 0" in diagnosis["text"][1]
    else:
        assert "learning rate 1e+38" in diagnosis["text"][1]


@pytest.mark.parametrize("optimizer", ["sgd-momentum", "adam"])
def test_a_later_step_that_would_write_a_nonfinite_value_leaves_weights_and_state_as_they_were(digits, optimizer):
    if optimizer == "adam":  # three sound steps, then beta1 that float32 makes 1: 1 - beta1^4 = 0
        sound = Config(optimizer="adam", lr=0.001)
        broken, slots = unchecked(sound.replace(), beta1=0.99999999), ("momentum", "velocity")
    else:  # three sound steps, then a learning rate that makes the momentum overflow
        sound = Config(momentum=0.9, clip="none", lr=0.001)  # small steps: the gradients stay large
        broken, slots = unchecked(sound.replace(), lr=3e38), ("momentum",)
    params = config_params(sound)
    names = list(params)
    state = OptimizerState(UpdateRule.of(sound), [params[name] for name in names], [True] * len(names))
    x, y = first_batch(digits, sound)
    xb, yb = tf.constant(np.stack([x] * 3)), tf.constant(np.stack([y] * 3))
    records, steps_run, stopped = make_train_chunk(params, sound, optimizer_state=state)(xb, yb)
    assert int(steps_run) == 3 and not bool(stopped) and not records.numpy()[:, -1].any()

    weights = {name: v.numpy() for name, v in params.items()}
    slot_values = {(slot, name): state.slots[i][j].numpy() for i, name in enumerate(names) for j, slot in enumerate(slots)}
    grads = eager_gradients(params, x, y)
    lr = np.float32(broken.lr)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if optimizer == "adam":
            expected = ("update", *first_nonfinite({name: weights[name] - (slot_values["momentum", name] + (
                grads[name] - slot_values["momentum", name]) * np.float32(1 - broken.beta1)) * np.float32(np.inf)
                for name in names}))
        else:
            expected = ("momentum", *first_nonfinite(
                {name: slot_values["momentum", name] * np.float32(0.9) - grads[name] * lr for name in names}))

    records, steps_run, stopped = make_train_chunk(params, broken, optimizer_state=state)(xb, yb)
    assert int(steps_run) == 1 and bool(stopped)
    record = records.numpy()[0]
    assert np.isfinite(record[0]) and np.isfinite(record[2])  # loss and global norm before: finite
    written = written_nonfinite(record[-1], broken.net, UpdateRule.of(broken), (True,) * len(names))
    assert (written["what"], written["tensor"], written["value"]) == expected
    for name in names:
        assert np.array_equal(params[name].numpy(), weights[name]), name
        for j, slot in enumerate(slots):
            assert np.array_equal(state.slots[names.index(name)][j].numpy(), slot_values[slot, name]), (slot, name)
    assert int(state.iterations.numpy()) == 3


def test_continue_applies_the_step_and_still_records_it(digits):
    config = unchecked(Config(epochs=1, clip="none", on_nonfinite="continue"), lr=1e38)
    trainer = Trainer(config, digits)
    results = list(train_epochs(trainer))
    assert len(results[0].values) == 2 and results[0].finished  # 256 examples: both steps ran
    assert results[0].nonfinite_write["step"] == 0
    assert not all(np.isfinite(v.numpy()).all() for v in trainer.params.values())  # applied, as documented


def test_a_run_of_4000_examples_compiles_one_program(mnist_5k):
    config = Config(epochs=2, hidden=(24,), clip_norm=1.0)  # a net no other test compiles
    trainer = Trainer(config, first_digits(mnist_5k, 4000, 100))
    results = list(train_epochs(trainer))
    assert [len(r.values) for r in results] == [32, 32]  # 31 x 128 + 32
    assert trainer.run_chunk.program.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_the_short_batch_logs_what_an_eager_step_on_its_real_examples_gives(mnist_5k, norm):
    """The last batch (32 of 160 examples) run alone from the initial weights, padded to 128 as a
    run pads it, against an eager tape on the 32 examples."""
    config = Config(hidden=(32, 16), norm=norm, clip_norm=0.2)
    data = first_digits(mnist_5k, 160, 10)
    trainer = Trainer(config, data)
    xb, yb = trainer.epoch_chunk(0)
    assert tuple(xb.shape) == (2, 128, 784) and trainer.batch_sizes.numpy().tolist() == [128, 32]
    records, _, _ = trainer.run_chunk(xb[1:], yb[1:], trainer.batch_sizes[1:])
    got = dict(zip(trainer.columns, records.numpy()[0].astype(np.float64)))

    params = config_params(config)
    x = tf.constant(prepare_inputs(data.x_train[128:], config.input_scale))
    y = tf.constant(one_hot(data.y_train[128:]))
    names = list(params)
    with tf.GradientTape() as tape:
        h, zs, units, stats = x, [], [], {}
        for layer in (1, 2, 3):
            z = h @ params[f"w{layer}"]
            zs.append(z)
            if layer == 3:
                out = z + params["b3"]
                break
            if norm == "batch":
                mean, variance = tf.nn.moments(z, axes=[0])
                stats[layer] = (mean.numpy(), variance.numpy())
                z = params[f"gamma{layer}"] * (z - mean) / tf.sqrt(variance + NORM_EPSILON) + params[f"beta{layer}"]
            else:
                z = z + params[f"b{layer}"]
            h = tf.nn.relu(z)
            units.append(h)
        loss = tf.reduce_mean(tf.square(y - out))
    grads = tape.gradient(loss, [params[name] for name in names] + zs)
    norms = {name: float(tf.norm(g)) for name, g in zip(names, grads)}
    global_norm = np.sqrt(sum(n * n for n in norms.values()))
    assert global_norm > 0.2  # clipping acts: the after columns depend on the real examples' norm
    assert np.isclose(got["loss"], float(loss), rtol=1e-5)
    hits = np.argmax(out.numpy(), 1) == np.argmax(y.numpy(), 1)
    assert got["accuracy"] == pytest.approx(hits.mean())
    assert np.isclose(got["global_norm_before"], global_norm, rtol=1e-5)
    for name in names:
        assert np.isclose(got[f"{name}_before"], norms[name], rtol=1e-4, atol=1e-9), name
        assert np.isclose(got[f"{name}_after"], norms[name] * 0.2 / global_norm, rtol=1e-4, atol=1e-9), name
    for layer, delta in enumerate(grads[len(names):], start=1):
        assert np.isclose(got[f"delta{layer}"], float(tf.norm(delta)), rtol=1e-4), layer
    for layer, h in enumerate(units, start=1):
        assert got[f"dead_h{layer}"] == pytest.approx(np.all(h.numpy() <= 0, axis=0).mean())
    if norm == "batch":  # the moving statistics took the real examples' batch statistics
        start = init_state(config.net)
        for layer, (mean, variance) in stats.items():
            for name, value in ((f"moving_mean{layer}", mean), (f"moving_variance{layer}", variance)):
                expected = start[name].numpy() * BATCH_NORM_MOMENTUM + value * (1 - BATCH_NORM_MOMENTUM)
                np.testing.assert_allclose(trainer.moving[name].numpy(), expected, rtol=1e-5, atol=1e-7)
