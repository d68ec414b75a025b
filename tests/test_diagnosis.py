"""The diagnosis of a divergence: on constructed metrics, one case per cause and per wording,
and on real runs of each cause."""

import math

import numpy as np
import pytest
from conftest import first_digits

import mnist_clip as mc
from mnist_clip.config import PARAM_NAMES, Config
from mnist_clip.runs.diagnosis import (
    BAD_INPUT,
    EXPLODING,
    MODEL_DESIGN,
    OUTPUT_LR,
    RUN_UP_STEPS,
    backward_order,
    diagnose,
    run_up,
    steps_to_inspect,
)

CLEAN = {"batch_size": 128, "largest_abs_input": 5.1, "dirty_in_batch": 0}


def metrics(norms, loss=None, gain=0.8, bad=("w3", "b3", "w2", "b2", "w1", "b1"), last=math.inf):
    """Reference-net columns: each tensor carries an equal share of the global norm; the step after
    `norms` is non-finite in the tensors `bad` (value `last`), the loss finite unless given."""
    steps = len(norms) + 1
    shares = np.append(np.asarray(norms, float), np.nan) / math.sqrt(len(PARAM_NAMES))
    table = {"step": np.arange(steps), "loss": np.array(loss if loss is not None else [1.0] * steps, float)}
    for name in PARAM_NAMES:
        table[f"{name}_before"] = shares.copy()
        table[f"{name}_before"][-1] = last if name in bad else 1.0
    table["global_norm_before"] = np.append(np.asarray(norms, float), math.inf)
    table["delta3"] = np.full(steps, 0.1)
    table["delta2"] = np.full(steps, 0.1)
    table["delta1"] = np.full(steps, 0.1 * gain)
    return table


def diagnosed(table, config=Config(clip="none"), batches=None, clean=5.1):
    step = len(table["loss"]) - 1
    facts = {s: {"step": s, **CLEAN, "largest_abs_input": clean} for s in steps_to_inspect(table, step)}
    for s, changes in (batches or {}).items():
        facts[s] = {**facts.get(s, {"step": s, **CLEAN}), **changes}
    return diagnose(table, config, step, facts, clean)


def test_steady_growth_is_exploding_gradients():
    d = diagnosed(metrics([3, 2, 6, 18, 54, 162]))
    assert d["growth"]["pattern"] == "growth" and d["growth"]["from_step"] == 1 and d["growth"]["steps"] == 4
    assert np.isclose(d["growth"]["per_step"], 3.0)
    assert d["cause"] == EXPLODING and d["first_nonfinite"] == "w3" and d["nonfinite_gradients"][:2] == ["w3", "b3"]
    assert d["text"][0].startswith("diverged at step 6: the gradient of w3 became Inf (then b3, w2, b2, w1, b1), "
                                   "the loss still finite (1)")
    assert "the global norm grew x3 per step over the 4 steps before (2 at step 1 -> 162 at step 5)" in d["text"][0]
    assert d["text"][1].startswith("likely cause: exploding gradients (the updates themselves made the gradients grow; "
                                   "the inputs reach 5.1, not scaled to 0..1); cures worth trying: lower_lr, batchnorm, "
                                   "clipping, scaled_inputs")
    assert "`mnist-clip cures`" in d["text"][1]


def test_a_jump_at_a_dirty_batch_is_bad_input():
    table = metrics([3, 2.5, 2.8, 2.6, 2.4, 2400, 1e5, 1e8])
    assert steps_to_inspect(table, 8) == [4, 5, 6, 7, 8]
    assert steps_to_inspect(metrics(list(np.arange(1.0, 101.0))), 100) == [0, *range(37, 101)]  # a long run-up's last 64
    d = diagnosed(table, Config(clip="none", dirty_fraction=0.01), {5: {"dirty_in_batch": 2, "largest_abs_input": 510}})
    growth = d["growth"]
    assert growth["pattern"] == "jump" and growth["jump_step"] == 5 and np.isclose(growth["jump_factor"], 1000)
    assert np.isclose(growth["calm_norm"], 2.6)
    assert d["cause"] == BAD_INPUT and [b["step"] for b in d["bad_batches"]] == [5]
    assert ("after a sudden jump: the global norm rose x1e+03 in one step at step 5 (median 2.6 before), then x204 per "
            "step (2.4 at step 4 -> 1e+08 at step 7)") in d["text"][0]
    assert "step 5's batch: 2 dirty (largest |input| 510)" in d["text"][0]
    assert d["text"][1].startswith("likely cause: bad input (the batch of step 5 held inputs far beyond the clean "
                                   "data's); cures worth trying: clean_data, clipping, scaled_inputs, lower_lr")


def test_a_dirty_batch_within_a_steady_growth_is_not_blamed():
    d = diagnosed(metrics([3, 2, 6, 18, 54, 162]), Config(clip="none", dirty_fraction=0.01),
                  {3: {"dirty_in_batch": 1, "largest_abs_input": 510}})
    assert d["cause"] == EXPLODING and d["bad_batches"] == [] and d["other_bad_batches"] == 1
    assert "1 other batch of the run-up held bad input, with no jump in the global norm" in d["text"][0]
    first = diagnosed(metrics([6600, 9e7]), Config(clip="none", dirty_fraction=0.01),
                      {0: {"dirty_in_batch": 1, "largest_abs_input": 510}})
    assert first["cause"] == BAD_INPUT  # the run-up began at step 0, on the dirty batch


def test_inputs_far_beyond_the_clean_data_are_bad_input_without_dirt():
    d = diagnosed(metrics([1, 1.2, 0.9, 900, 9e5]), Config(clip="none", input_scale=255),
                  {3: {"largest_abs_input": 100.0}}, clean=1.0)
    assert d["cause"] == BAD_INPUT and d["cures"] == ["clipping", "lower_lr"]  # no dirt to clean, inputs in 0..1


def test_a_net_that_multiplies_its_signal_is_model_design():
    d = diagnosed(metrics([4e6], gain=50.0), Config(clip="none", hidden=(512, 512)))
    assert d["growth"]["pattern"] == "at once" and d["cause"] == MODEL_DESIGN and np.isclose(d["signal_gain"], 50)
    assert "in one step from a global norm of 4e+06 at step 0" in d["text"][0]
    assert "likely cause: model design (the net multiplies the back-propagated signal x50 from the output layer to " \
           "the first" in d["text"][1]
    assert d["cures"] == ["he_relu", "glorot", "batchnorm", "layernorm", "residual", "clipping", "lower_lr"]
    narrow = diagnosed(metrics([4e6], gain=50.0), Config(clip="none"))
    assert "residual" not in narrow["cures"]  # 784-256-128-10 has no layer of equal widths: its config refuses it


def test_a_first_step_that_is_not_finite():
    d = diagnosed(metrics([], loss=[math.nan], last=math.nan))
    assert d["growth"] == {"pattern": "first step", "steps": 0} and d["first_nonfinite"] == "loss"
    assert d["cause"] == MODEL_DESIGN
    assert d["text"][0].startswith("diverged at step 0: the loss became NaN, at the very first step, before any update")
    assert "the net's first step, from its initial weights, is already non-finite" in d["text"][1]


def test_a_calm_step_that_turns_non_finite_at_once_and_an_overflowing_global_norm():
    d = diagnosed(metrics([2, 2.1, 1.9], bad=()))
    assert d["growth"]["pattern"] == "at once" and d["first_nonfinite"] == "global_norm" and d["cause"] == EXPLODING
    assert "the global gradient norm overflowed float32 (Inf) while each tensor's stayed finite, in one step from a " \
           "global norm of 1.9 at step 2 (median 2 before)" in d["text"][0]


def test_the_cures_named_are_those_that_change_the_setup():
    assert diagnosed(metrics([3, 2, 6, 18]), Config())["cures"] == ["lower_lr", "batchnorm", "scaled_inputs"]
    scaled = diagnosed(metrics([3, 2, 6, 18]), Config(clip="none", input_scale=255, norm="batch"), clean=1.0)
    assert scaled["cures"] == ["lower_lr", "clipping"] and "not scaled" not in scaled["text"][1]


def test_gradients_are_named_in_the_order_back_propagation_reaches_them():
    assert backward_order(["w1", "gamma1", "beta1", "w2", "b2"]) == ["w2", "b2", "w1", "gamma1", "beta1"]
    assert backward_order(["wx", "wh", "bh", "wo", "bo"]) == ["bo", "wo", "bh", "wh", "wx"]  # no layer numbers


def test_run_up_against_a_loop():
    rng = np.random.default_rng(3)
    norms = np.exp(rng.normal(0, 1, 40))
    step = 40
    growth = run_up(np.append(norms, np.inf), step)
    base = step - 1
    while base >= 1 and norms[base] > norms[base - 1]:
        base -= 1
    assert growth["from_step"] == base and growth["steps"] == step - 1 - base


@pytest.fixture(scope="module")
def diverged(mnist_5k, tmp_path_factory):
    out = tmp_path_factory.mktemp("diverged")

    def train(name, n_train, **settings):
        data = first_digits(mnist_5k, n_train, 100)
        return mc.train(out=out, name=name, plots=False, progress="quiet", data=data, **{"epochs": 1, **settings})

    return {"explode": train("explode", 768, lr=0.05, clip="none"),
            "dirty": train("dirty", 768, clip="none", dirty_fraction=0.01, epochs=2),
            "design": train("design", 256, clip="none", hidden=(512,) * 8)}


def test_real_divergences_are_diagnosed(diverged):
    explode, dirty, design = (diverged[name] for name in ("explode", "dirty", "design"))
    for run in (explode, dirty, design):
        d = run.summary["diagnosis"]
        assert run.summary["status"] == "diverged" and d["step"] == run.summary["first_nonfinite_step"]
        metrics = run.run.metrics
        failing = d["step"]
        assert d["loss"] is None or np.isclose(d["loss"], metrics["loss"][failing], rtol=1e-6)
        for name in d["nonfinite_gradients"]:
            assert not np.isfinite(metrics[f"{name}_before"][failing])
        assert d["text"] and d["text"][0].startswith(f"diverged at step {failing}: ")
    assert explode.summary["diagnosis"]["cause"] == EXPLODING
    growth = explode.summary["diagnosis"]["growth"]
    norms = explode.run.metrics["global_norm_before"]
    expected = (norms[growth["to_step"]] / norms[growth["from_step"]]) ** (1 / growth["steps"])
    assert np.isclose(growth["per_step"], expected, rtol=1e-6) and growth["per_step"] > 2
    d = dirty.summary["diagnosis"]
    assert d["cause"] == BAD_INPUT and d["cures"][0] == "clean_data"
    dirty_steps = set(np.flatnonzero(dirty.run.metrics["dirty_in_batch"] > 0).tolist())
    assert {b["step"] for b in d["bad_batches"]} <= dirty_steps
    assert all(b["largest_abs_input"] == pytest.approx(510, rel=1e-6) for b in d["bad_batches"])
    assert design.summary["diagnosis"]["cause"] == MODEL_DESIGN
    metrics = design.run.metrics
    assert np.isclose(design.summary["diagnosis"]["signal_gain"], metrics["delta1"][0] / metrics["delta9"][0])


def test_a_signal_that_grows_back_through_time_is_exploding_gradients():
    """For the recurrent net, the same growth of the signal that is model design in an MLP is
    what exploding gradients are: back-propagation through time multiplying it."""
    names = ("wx", "wh", "bh", "wo", "bo")
    table = {"step": np.arange(2), "loss": np.array([1.0, 1.0]), "global_norm_before": np.array([4e6, math.inf])}
    for name in names:
        table[f"{name}_before"] = np.array([4e6 / math.sqrt(len(names)), math.inf])
    for t in range(1, 29):
        table[f"dh{t}"] = np.full(2, 0.1 * (64.0 if t == 1 else 1.0))
    config = Config(model="rnn", clip="none")
    d = diagnosed(table, config)
    assert d["through_time"] and d["cause"] == EXPLODING and np.isclose(d["signal_gain"], 64)
    assert "likely cause: exploding gradients (back-propagation through time multiplies the signal x64 from the " \
           "last time step back to the first" in d["text"][1]
    assert "clipping" in d["cures"] and "batchnorm" not in d["cures"]  # the rnn's config refuses a norm
    mlp = {k: v for k, v in table.items() if not k.startswith(("w", "b", "dh"))}
    for name in PARAM_NAMES:
        mlp[f"{name}_before"] = table["wx_before"]
    mlp.update({"delta1": np.full(2, 6.4), "delta2": np.full(2, 0.1), "delta3": np.full(2, 0.1)})
    assert diagnosed(mlp)["cause"] == MODEL_DESIGN and not diagnosed(mlp)["through_time"]  # the MLP: as before


def recurrent_metrics(steps, wo_norms, recurrent_norms, early_signal, saturated):
    """Recurrent-net columns for `steps` finite steps then a non-finite one: wo and bo carry
    wo_norms (each half of its square), wx, wh, bh recurrent_norms; dh_t for t <= 6 is
    early_signal times dh28 (1), the later ones 1; saturated_h1 the share of saturated units."""
    table = {"step": np.arange(steps + 1), "loss": np.append(np.ones(steps), math.nan)}
    for names, norms in ((("wo", "bo"), wo_norms), (("wx", "wh", "bh"), recurrent_norms)):
        for name in names:
            table[f"{name}_before"] = np.append(np.asarray(norms, float) / math.sqrt(len(names)), math.nan)
    squares = sum(table[f"{name}_before"] ** 2 for name in ("wx", "wh", "bh", "wo", "bo"))
    table["global_norm_before"] = np.sqrt(squares)
    for t in range(1, 29):
        table[f"dh{t}"] = np.append(np.asarray(early_signal, float) if t <= 6 else np.ones(steps), math.nan)
    table["saturated_h1"] = np.append(np.asarray(saturated, float), math.nan)
    return table


def test_saturated_units_and_a_growing_output_layer_are_its_learning_rate():
    """The recurrent net's signal grew through time at the first steps; then every unit saturated,
    nothing flowed back, and only the output layer's gradient grew (x4 per step) up to the NaN:
    a learning rate too high for the output layer, not back-propagation through time."""
    steps = 20
    wo = np.append(np.full(8, 0.5), 0.5 * 4.0 ** np.arange(1, steps - 7))
    recurrent = np.append(np.full(8, 2.0), np.full(steps - 8, 1e-3))
    early = np.append(np.full(8, 56.0), np.zeros(steps - 8))  # dh1..dh27 are 0 once all units saturate
    saturated = np.append(np.full(8, 0.1), np.ones(steps - 8))
    d = diagnosed(recurrent_metrics(steps, wo, recurrent, early, saturated), Config(model="rnn", clip="none"))
    assert d["cause"] == OUTPUT_LR and not d["through_time"] and d["cures"] == ["lower_lr", "clipping"]
    m = d["run_up"]
    assert (m["from_step"], m["to_step"]) == (steps - RUN_UP_STEPS, steps - 1)
    window = slice(steps - RUN_UP_STEPS, steps)
    share = np.median(wo[window] ** 2 / (wo[window] ** 2 + recurrent[window] ** 2))  # float64 reference
    assert np.isclose(m["output_share"], share) and m["output_share"] > 0.99
    assert np.isclose(m["growth"]["wo"], 4.0) and np.isclose(m["growth"]["wh"], 1.0)
    assert m["signal_growth"] == 0 and m["inactive"] == 1
    assert np.isclose(d["signal_gain"], 56)  # the calm's growth through time is still reported, as earlier
    cause = d["text"][1]
    assert cause.startswith(f"likely cause: {OUTPUT_LR} (over steps 10-19, the output layer (wo, bo) carried 100% of "
                            "the squared global norm and its gradient grew x4 per step, while almost no signal "
                            "flowed back (100% of the hidden units saturated, dh1-6 / dh28 0)")
    assert "Earlier, back-propagation through time had multiplied the signal x56 (from the last time step back to the " \
           "first): those are the steps clipping acts on; unclipped, their large steps then saturated the units" in cause
    assert "back-propagation through time multiplies" not in cause
    assert d["text"][2].startswith("the run-up (steps 10-19): gradients per step wo x4, bo x4, ")
    assert "dh1-6 / dh28 0" in d["text"][2] and "w1" not in " ".join(d["text"]) and "delta" not in " ".join(d["text"])


def test_a_signal_growing_through_time_over_the_run_up_is_exploding_gradients():
    """The recurrent layer carries most of the norm and dh_1-6 / dh_28 is x30 over the run-up,
    the units mostly active: exploding gradients through time, whatever the first steps were."""
    steps = 12
    recurrent = 2.0 * 3.0 ** np.arange(steps)
    d = diagnosed(recurrent_metrics(steps, np.full(steps, 1.0), recurrent, np.full(steps, 30.0), np.full(steps, 0.2)),
                  Config(model="rnn", clip="none"))
    assert d["cause"] == EXPLODING and d["through_time"]
    assert d["run_up"]["hidden_share"] > 0.99 and np.isclose(d["run_up"]["growth"]["wh"], 3.0)
    assert ("back-propagation through time multiplies the signal x30 from the last time step back to the first "
            "rows over steps 2-11 (dh1-6 / dh28, median)") in d["text"][1]
    assert "the output layer (wo, bo) carried 0% of the squared global norm, the recurrent layer (wx, wh, bh) 100%" \
        in d["text"][2]
    # the same run-up with its units saturated and the output layer carrying the norm is not
    swapped = recurrent_metrics(steps, recurrent, np.full(steps, 1.0), np.zeros(steps), np.ones(steps))
    assert diagnosed(swapped, Config(model="rnn", clip="none"))["cause"] == OUTPUT_LR
    # nor is one whose units are not all saturated at every time step, but whose signal is 0 before t = 28
    silent = recurrent_metrics(steps, recurrent, np.full(steps, 1.0), np.zeros(steps), np.full(steps, 0.13))
    assert diagnosed(silent, Config(model="rnn", clip="none"))["cause"] == OUTPUT_LR
    # an output layer that carries most of the norm while the signal still flows back is not named so
    flowing = recurrent_metrics(steps, recurrent, np.full(steps, 1.0), np.full(steps, 0.5), np.full(steps, 0.13))
    assert diagnosed(flowing, Config(model="rnn", clip="none"))["cause"] == EXPLODING
