"""The recurrent net against a float64 NumPy back-propagation through time, Keras's SimpleRNN and
its refusals."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import first_digits

from mnist_clip.cli import cli
from mnist_clip.config import Config, load_toml
from mnist_clip.errors import InputError
from mnist_clip.nn.model import config_params, forward, one_hot, prepare_inputs
from mnist_clip.recipe_files import resolve_config_file
from mnist_clip.runs.diagnosis import EXPLODING, OUTPUT_LR, diagnose
from mnist_clip.training.step import Trainer, train_epochs

WIDTH, BATCH, STEPS = 16, 32, 3


def numpy_bptt(p: dict, x: np.ndarray, y: np.ndarray, activation: str) -> dict:
    """Loss, every tensor's gradient and |dL/dh_t| for t = 1..28, in float64, written from
    EXPERIMENT.md: h_t = act(x_t wx + h_(t-1) wh + bh), out = h_28 wo + bo, MSE."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    act = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0.0)}[activation]
    derivative = {"tanh": lambda a: 1 - np.tanh(a) ** 2, "relu": lambda a: (a > 0).astype(np.float64)}[activation]
    rows = x.astype(np.float64).reshape(len(x), 28, 28)
    hs, pre = [np.zeros((len(x), p["wh"].shape[0]))], []
    for t in range(28):
        pre.append(rows[:, t] @ p["wx"] + hs[-1] @ p["wh"] + p["bh"])
        hs.append(act(pre[-1]))
    out = hs[-1] @ p["wo"] + p["bo"]
    loss = np.mean((y - out) ** 2)
    d_out = 2 * (out - y) / y.size
    grads = {"wo": hs[-1].T @ d_out, "bo": d_out.sum(0), "wx": 0.0, "wh": 0.0, "bh": 0.0}
    dh = d_out @ p["wo"].T
    signal = [0.0] * 28
    for t in reversed(range(28)):
        signal[t] = np.linalg.norm(dh)
        da = dh * derivative(pre[t])
        grads["wx"] = grads["wx"] + rows[:, t].T @ da
        grads["wh"] = grads["wh"] + hs[t].T @ da
        grads["bh"] = grads["bh"] + da.sum(0)
        dh = da @ p["wh"].T
    return {"loss": loss, "grads": grads, "signal": np.array(signal)}


@pytest.mark.parametrize("activation, gain, clip", [("tanh", 1.3, "none"), ("tanh", 1.3, "global_norm"),
                                                    ("relu", 1.0, "none"), ("relu", 1.0, "global_norm")])
def test_first_steps_match_numpy_bptt(mnist_5k, activation, gain, clip):
    config = Config(model="rnn", hidden=(WIDTH,), activation=activation, recurrent_gain=gain, clip=clip,
                    clip_norm=0.05, batch_size=BATCH, epochs=1, lr=0.05, input_scale=255.0)
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
        ref = numpy_bptt(p, x, y, activation)
        row = values[step]
        np.testing.assert_allclose(row[column["loss"]], ref["loss"], rtol=1e-5)
        norms = {name: np.linalg.norm(g) for name, g in ref["grads"].items()}
        global_norm = np.sqrt(sum(n * n for n in norms.values()))
        scale = min(1.0, 0.05 / global_norm) if clip == "global_norm" else 1.0
        fired += scale < 1
        np.testing.assert_allclose(row[column["global_norm_before"]], global_norm, rtol=1e-4)
        for name, norm in norms.items():
            np.testing.assert_allclose(row[column[f"{name}_before"]], norm, rtol=1e-4, err_msg=name)
            np.testing.assert_allclose(row[column[f"{name}_after"]], norm * scale, rtol=1e-4, err_msg=name)
            np.testing.assert_allclose(row[column[f"{name}_update"]], 0.05 * norm * scale, rtol=1e-4, err_msg=name)
        signal = row[[column[f"dh{t}"] for t in range(1, 29)]]
        np.testing.assert_allclose(signal, ref["signal"], rtol=2e-4, atol=1e-12)
        # the next step's reference starts from this step's SGD update, clipped as the run clips
        p = {name: p[name] - 0.05 * scale * np.asarray(g) for name, g in ref["grads"].items()}
    assert (fired > 0) == (clip == "global_norm")
    final = {name: v.numpy() for name, v in trainer.params.items()}
    for name in final:
        np.testing.assert_allclose(final[name], p[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("gain", [0.5, 1.0, 1.7])
def test_the_recurrent_weight_has_every_singular_value_equal_to_the_gain(gain):
    config = Config(model="rnn", hidden=(64,), recurrent_gain=gain, seed=3)
    wh = config_params(config)["wh"].numpy().astype(np.float64)
    np.testing.assert_allclose(np.linalg.svd(wh, compute_uv=False), gain, rtol=1e-5)
    other = config_params(config.replace(seed=4))["wh"].numpy()
    assert not np.allclose(wh, other)  # seeded per run
    assert np.array_equal(wh, config_params(config)["wh"].numpy())  # and reproducible


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_the_forward_pass_equals_keras_simple_rnn_then_dense(mnist_5k, activation):
    config = Config(model="rnn", hidden=(24,), activation=activation, recurrent_gain=1.2, init="glorot")
    params = config_params(config)
    # biases are zero at the start: give them values so that they are tested too
    rng = np.random.default_rng(0)
    params["bh"].assign(rng.normal(0, 0.1, 24).astype(np.float32))
    params["bo"].assign(rng.normal(0, 0.1, 10).astype(np.float32))
    x = prepare_inputs(mnist_5k.x_train[:50], config.input_scale)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.SimpleRNN(24, activation=activation),
                              keras.layers.Dense(10)])
    model.set_weights([params[name].numpy() for name in ("wx", "wh", "bh", "wo", "bo")])
    expected = model(x.reshape(-1, 28, 28)).numpy()
    got = forward(params, tf.constant(x), config.net).out.numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_a_recurrent_run_writes_its_signal_through_time_and_draws_every_picture(mnist_5k, tmp_path):
    from mnist_clip.experiment import run_experiment
    from mnist_clip.runs.reader import read_run
    from mnist_clip.viz.recurrent import TIME_FIGURES, time_profile
    from mnist_clip.viz.registry import figures_for, write_run_plots

    config = Config(model="rnn", hidden=(WIDTH,), epochs=2, batch_size=BATCH, recurrent_gain=1.5)
    (tmp_path / "r").mkdir()
    run_experiment(config, first_digits(mnist_5k, 3 * BATCH, 16), tmp_path / "r", draw_plots=False)
    run = read_run(tmp_path / "r")
    assert run.tensors == ("wx", "wh", "bh", "wo", "bo") and run.net.is_recurrent
    signal = np.array([run.metrics[f"dh{t}"] for t in range(1, 29)])
    assert signal.shape == (28, 6) and np.all(signal > 0)
    assert set(run.epochs) >= {"wx_moved", "wh_moved", "wo_moved"}
    np.testing.assert_allclose(time_profile(run, 1), np.median(signal[:, 3:], axis=1))
    assert figures_for(run) == TIME_FIGURES  # the recurrent family: signals and flow through time
    assert [p.name for p in write_run_plots(run.path)] == list(TIME_FIGURES)


REFUSALS = {
    "gain without rnn": (["--recurrent-gain", "2"], "--recurrent-gain: an option of --model rnn"),
    "gain at its default without rnn": (["--recurrent-gain", "1"], "--recurrent-gain: an option of --model rnn"),
    "gain zero": (["--model", "rnn", "--recurrent-gain", "0"], "--recurrent-gain: must be > 0"),
    "gain negative": (["--model", "rnn", "--recurrent-gain", "-1"], "--recurrent-gain: must be > 0"),
    "two widths": (["--model", "rnn", "--hidden", "64,32"], "--hidden: a recurrent net has one hidden width (got 64,32)"),
    "no width": (["--model", "rnn", "--hidden", "none"], "--hidden: a recurrent net has one hidden width"),
    "batch norm": (["--model", "rnn", "--norm", "batch"], "--norm: applies to the MLP's dense hidden layers, not to --model rnn"),
    "residual": (["--model", "rnn", "--residual"], "--residual: applies to the MLP's dense hidden layers"),
    "unknown tensor": (["--model", "rnn", "--train", "w1"], "--train: unknown tensor 'w1'; allowed: wx, wh, bh, wo, bo"),
    "unknown model": (["--model", "gru"], "'gru' is not one of"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_options_that_do_not_apply_to_the_recurrent_net_are_refused(tmp_path, case):
    args, message = REFUSALS[case]
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["train", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not out.exists()


def test_the_rnn_brings_its_own_defaults_unless_given():
    from mnist_clip.api import make_config

    assert (Config(model="rnn").hidden, Config(model="rnn").activation) == ((128,), "tanh")
    assert (Config().hidden, Config().activation) == ((256, 128), "relu")
    assert Config(hidden=(64,)).replace(model="rnn").hidden == (64,)  # a width the user chose stays
    assert Config(model="rnn").replace(model="mlp").hidden == (256, 128)
    with pytest.raises(InputError, match="one hidden width"):
        Config(model="rnn", hidden=(256, 128))
    plain = make_config(None, {"model": "rnn"})
    assert (plain.hidden, plain.activation) == ((128,), "tanh")
    given = make_config(None, {"model": "rnn", "hidden": "32", "activation": "relu"})
    assert (given.hidden, given.activation) == ((32,), "relu")
    assert make_config("rnn").model == "rnn"
    with pytest.raises(InputError, match="recurrent_gain: an option of model='rnn'"):
        make_config(None, {"recurrent_gain": 2.0})


def test_agc_clips_the_recurrent_weight_unit_by_unit_over_its_fan_in(mnist_5k):
    """AGC's units of wh [H, H] are its columns: each hidden unit's incoming recurrent weights.
    LAMBDA lies among wh's unit ratios on these digits, so some units are clipped and some not."""
    LAMBDA = 0.033
    config = Config(model="rnn", hidden=(WIDTH,), activation="tanh", clip="agc", clip_norm=LAMBDA, batch_size=BATCH, epochs=1,
                    recurrent_gain=1.3, input_scale=255.0)
    data = first_digits(mnist_5k, BATCH, 16)
    trainer = Trainer(config, data)
    p = {name: v.numpy().astype(np.float64) for name, v in trainer.params.items()}
    row = next(train_epochs(trainer)).values[0]
    column = {name: i for i, name in enumerate(trainer.columns)}
    grads = numpy_bptt(p, prepare_inputs(data.x_train, 255.0), one_hot(data.y_train), "tanh")["grads"]
    for name in ("wx", "wh", "wo"):
        g_units = np.linalg.norm(grads[name], axis=0)  # one norm per output unit, over the fan-in
        w_units = np.maximum(np.linalg.norm(p[name], axis=0), 1e-3)
        clipped = g_units >= LAMBDA * w_units
        np.testing.assert_allclose(row[column[f"{name}_units_clipped"]], clipped.mean(), err_msg=name)
        np.testing.assert_allclose(row[column[f"{name}_agc_ratio"]], (g_units / w_units).max(), rtol=1e-4)
        after = np.where(clipped, LAMBDA * w_units, g_units)
        np.testing.assert_allclose(row[column[f"{name}_after"]], np.linalg.norm(after), rtol=1e-4, err_msg=name)
    assert 0 < row[column["wh_units_clipped"]] < 1  # some hidden units clipped, not all: the test can tell


def run_until_nonfinite(config, dataset):
    """The metrics of a run of `config` as arrays, and its first non-finite step (None if none)."""
    trainer = Trainer(config, dataset)
    values = np.concatenate([result.values for result in train_epochs(trainer)])
    metrics = dict(zip(trainer.columns, values.T))
    bad = ~np.isfinite(metrics["loss"]) | ~np.isfinite(metrics["global_norm_before"])
    return metrics, (int(np.argmax(bad)) if bad.any() else None)


def recipe(name, **changes):
    return Config(**{**load_toml(resolve_config_file(name)), **changes})


def run_up_reference(metrics, step, output=("wo", "bo")):
    """float64 NumPy from the columns: over the (up to) 10 steps before `step`, the median share
    of the squared global norm that the output layer carries, the median of the largest of
    dh1..dh6 over dh28, and the mean share of inactive units."""
    span = slice(max(0, step - 10), step)
    squares = {name: metrics[f"{name}_before"][span].astype(np.float64) ** 2 for name in ("wx", "wh", "bh", "wo", "bo")}
    share = np.median(sum(squares[name] for name in output) / sum(squares.values()))
    early = np.max([metrics[f"dh{t}"][span].astype(np.float64) for t in range(1, 7)], axis=0)
    inactive = [metrics[c][span] for c in metrics if c.startswith(("dead_h", "saturated_h"))]
    return share, np.median(early / metrics["dh28"][span]), float(np.mean(inactive))


def test_rnn_explode_fails_through_time_and_its_clipped_twin_trains(mnist_5k):
    """What rnn_explode's comment claims, read from a real run's metrics: over the steps before
    the first non-finite one the recurrent layer carries most of the global norm and the signal
    near the first inked rows is 10x dh28 or more (back-propagation through time multiplies it),
    with most units alive; the diagnosis says exploding gradients through time. Its clipped twin
    clips those first steps and stays finite."""
    data = first_digits(mnist_5k, 1024, 100)
    metrics, step = run_until_nonfinite(recipe("rnn_explode", epochs=1), data)
    assert step is not None and step >= 2
    output_share, through_time, inactive = run_up_reference(metrics, step)
    assert output_share < 0.5 and through_time >= 10 and inactive < 0.5
    d = diagnose(metrics, recipe("rnn_explode"), step, {}, 1.0)
    assert d["cause"] == EXPLODING and d["through_time"]
    assert "likely cause: exploding gradients (back-propagation through time multiplies the signal x" in d["text"][1]
    assert np.isclose(d["run_up"]["output_share"], output_share) and np.isclose(d["run_up"]["signal_growth"], through_time)
    clipped, failed = run_until_nonfinite(recipe("rnn_explode_clipped", epochs=1), data)
    assert failed is None and clipped["clipped"][:step].all()


def test_rnn_saturate_fails_in_its_output_layer_after_the_units_saturate(mnist_5k):
    """The older recurrent recipe's real chain: the signal grows through time at the first steps
    (dh1-6 / dh28 well above 10 at step 0); then the units saturate, and over the run-up to the
    NaN the output layer (wo, bo) carries almost all the global norm while nothing flows back:
    the diagnosis names a learning rate too high for the output layer."""
    metrics, step = run_until_nonfinite(recipe("rnn_saturate", epochs=2), mnist_5k)
    assert step is not None
    first = max(metrics[f"dh{t}"][0] for t in range(1, 7)) / metrics["dh28"][0]
    output_share, through_time, inactive = run_up_reference(metrics, step)
    assert first >= 10 and output_share > 0.9 and through_time < 1 and inactive >= 0.5
    d = diagnose(metrics, recipe("rnn_saturate"), step, {}, 1.0)
    assert d["cause"] == OUTPUT_LR and "the output layer (wo, bo) carried" in d["text"][1]
