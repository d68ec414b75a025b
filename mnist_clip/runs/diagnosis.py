"""Why a run diverged, from what it recorded: the first non-finite quantity, how the global norm
got there, what the batch held, the likely cause in the material's words and the cures worth
trying. Pure functions of the metrics, the config and the facts of a few batches; no TensorFlow."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from mnist_clip.config import CONFIG_KEYS, Config
from mnist_clip.nn import Net
from mnist_clip.plans.cure_table import BY_NAME, apply_cure

EXPLODING, BAD_INPUT, MODEL_DESIGN = "exploding gradients", "bad input", "model design"
OUTPUT_LR = "a learning rate too high for the output layer"
JUMP_FACTOR = 10.0  # one step multiplying the global norm by this much, after calmer steps, is a jump
CALM_STEPS = 8  # the steps before a run-up whose median global norm is "before it"
OUTLIER_INPUT = 3.0  # a batch whose largest |input| is this many times the clean data's holds bad input
DESIGN_GAIN = 10.0  # |delta_1| / |delta_L| at the start: the net multiplies the signal this much on its way back
SCALED_INPUT = 1.0  # inputs beyond this are not scaled to 0..1
SHOWN_TENSORS = 5  # the tensors named after the first non-finite one; more are counted
SHOWN_BATCHES = 3  # the bad batches named; more are counted
INSPECTED_STEPS = 64  # at most this many batches before a failure are looked at
RUN_UP_STEPS = 10  # the finite steps before the first non-finite one whose mechanism is read
# The row of an image by which most digits have begun (71% of the bundled digits have ink in
# rows 1-6, 0.4% in rows 1-2): the recurrent net's signal through time is read there, since
# with ReLU dh_t is exactly 0 over a digit's blank top rows.
FIRST_INKED_ROW = 6
OUTPUT_LAYER_SHARE = 0.5  # the output layer carries "most" of the global norm above this share
SATURATED = 0.5  # half or more of the hidden units saturated (or dead): little signal flows back
NO_SIGNAL = 0.01  # the signal at the first layer (or rows) below this share of the last one's: none flows back
# The cures worth trying for each cause, in the order the material gives them.
CURES_FOR = {
    EXPLODING: ("lower_lr", "batchnorm", "clipping", "scaled_inputs"),
    BAD_INPUT: ("clean_data", "clipping", "scaled_inputs", "lower_lr"),
    MODEL_DESIGN: ("he_relu", "glorot", "batchnorm", "layernorm", "residual", "clipping", "lower_lr"),
    OUTPUT_LR: ("lower_lr", "clipping"),
}
# With finite gradients, the update rule's own arithmetic made a NaN/Inf: the step was not applied
NONFINITE_UPDATE = "the update became non-finite with finite gradients"
CURES_FOR[NONFINITE_UPDATE] = ("lower_lr", "clipping")


def column(metrics: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    return np.asarray(metrics[name], dtype=float)


def tensors_of(metrics: Mapping[str, Any]) -> list[str]:
    """The tensors, from the metrics' columns (w1 b1 ... wL bL), in forward order."""
    return [c[: -len("_before")] for c in metrics if c.endswith("_before") and c != "global_norm_before"]


def backward_order(tensors: list[str]) -> list[str]:
    """The tensors from the output layer back to the input, a layer's weight before its bias:
    the order back-propagation reaches them (tensors named without a layer number, reversed)."""
    def layer(position: int) -> int:
        digits = "".join(ch for ch in tensors[position] if ch.isdigit())
        return int(digits) if digits else position

    return [tensors[i] for i in sorted(range(len(tensors)), key=lambda i: (-layer(i), i))]


def run_up(global_norm: np.ndarray, step: int) -> dict:
    """How the global norm got to the failing step: the streak of growing steps just before it
    (from the step before the streak, `from_step`, to the step before the failure), its growth
    factor per step, its largest single-step factor, and the median norm before the streak."""
    if step == 0:
        return {"pattern": "first step", "steps": 0}
    norms = global_norm[:step]
    start = step - 1  # the streak's first growing step
    while start >= 1 and norms[start] > norms[start - 1]:
        start -= 1
    base = start  # the last step before the norm started to grow
    growing = step - 1 - base
    calm = norms[max(0, base - CALM_STEPS + 1): base + 1]
    result = {"from_step": base, "from_norm": float(norms[base]), "to_step": step - 1, "to_norm": float(norms[-1]),
              "steps": growing, "calm_norm": float(np.median(calm)) if base >= 1 else None}
    if not growing:
        return {**result, "pattern": "at once", "per_step": None, "jump_step": step, "jump_factor": None}
    with np.errstate(divide="ignore", invalid="ignore"):
        factors = norms[base + 1: step] / norms[base: step - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        per_step = float((norms[-1] / norms[base]) ** (1 / growing))
    # a jump: the streak opens with one large factor after steps that were not growing; else
    # the largest factor of a steady growth
    jumped = factors[0] >= JUMP_FACTOR and base >= 1
    jump = 0 if jumped else int(np.argmax(factors))
    return {**result, "pattern": "jump" if jumped else "growth", "per_step": per_step, "jump_step": base + 1 + jump,
            "jump_factor": float(factors[jump])}


def steps_to_inspect(metrics: Mapping[str, np.ndarray], step: int) -> list[int]:
    """The steps whose batches the diagnosis looks at: from the step before the run-up to the
    failing one (the last INSPECTED_STEPS of a long run-up, and the step it began from)."""
    start = run_up(column(metrics, "global_norm_before"), step).get("from_step", step)
    return sorted({start, *range(max(start, step - INSPECTED_STEPS + 1), step + 1)})


def first_nonfinite(metrics: Mapping[str, np.ndarray], step: int, update: Mapping[str, Any] | None = None) -> dict:
    """What turned NaN/Inf at the step, in the order the step computes it: the loss, then the
    gradients from the output layer back to the first, then what the step would write (`update`,
    the run's record of it: what, tensor and value; see Trainer.written)."""
    loss = float(column(metrics, "loss")[step])
    tensors = tensors_of(metrics)
    bad = [name for name in backward_order(tensors) if not math.isfinite(float(column(metrics, f"{name}_before")[step]))]
    kinds = {name: "NaN" if math.isnan(float(column(metrics, f"{name}_before")[step])) else "Inf" for name in bad}
    if not math.isfinite(loss):
        return {"first_nonfinite": "loss", "value": "NaN" if math.isnan(loss) else "Inf", "loss": None,
                "nonfinite_gradients": bad}
    if not bad and update is not None and math.isfinite(float(column(metrics, "global_norm_before")[step])):
        return {"first_nonfinite": "update", "value": update["value"], "loss": loss, "nonfinite_gradients": [],
                "written": dict(update)}
    if not bad:  # the global norm alone overflowed: every norm finite, their sum of squares not
        return {"first_nonfinite": "global_norm", "value": "Inf", "loss": loss, "nonfinite_gradients": []}
    return {"first_nonfinite": bad[0], "value": kinds[bad[0]], "loss": loss, "nonfinite_gradients": bad}


def signal_gain(metrics: Mapping[str, np.ndarray], step: int, signals: tuple[str, ...]) -> float | None:
    """The first signal column over the last at a step (|delta_1| / |delta_L|, or the recurrent
    net's |dh_1| / |dh_28|): how much the net multiplies the signal on its way back."""
    if len(signals) < 2 or step < 0 or signals[0] not in metrics or signals[-1] not in metrics:
        return None
    first, last = float(column(metrics, signals[0])[step]), float(column(metrics, signals[-1])[step])
    return first / last if math.isfinite(first) and math.isfinite(last) and last > 0 else None


def run_up_mechanism(metrics: Mapping[str, np.ndarray], step: int, net: Net,
                     window: int = RUN_UP_STEPS) -> dict | None:
    """How the steps just before the first non-finite one failed, from their metrics.

    Over the last `window` finite steps before `step`: each layer's share of the squared
    global norm (the output layer's, and the hidden or recurrent layers' together, medians over
    the steps), each tensor's growth factor per step, the signal's growth back through the net
    (dh_1-6 / dh_28 for the recurrent net, read near the first inked rows; delta_1 / delta_L for
    the MLP; medians over the steps) and the share of saturated or dead hidden units (mean).
    For the recurrent net the signal near the first rows is the largest of dh_1 ... dh_6: with
    ReLU, dh_t is exactly 0 over a digit's blank top rows.
    None when no finite step precedes `step`."""
    first = max(0, step - window)
    if step - first < 1:
        return None
    span = slice(first, step)
    squares = {name: column(metrics, f"{name}_before")[span] ** 2 for name in net.names if f"{name}_before" in metrics}
    total = column(metrics, "global_norm_before")[span] ** 2
    output = {tensor.name for tensor in net.layers[-1].tensors}
    with np.errstate(divide="ignore", invalid="ignore"):
        output_share = np.median(sum(v for k, v in squares.items() if k in output) / total)
        hidden_share = np.median(sum(v for k, v in squares.items() if k not in output) / total)
        growth = {}
        for name, values in squares.items():
            norms = np.sqrt(values)
            growth[name] = (float((norms[-1] / norms[0]) ** (1 / (len(norms) - 1)))
                            if len(norms) > 1 and norms[0] > 0 else None)
    near = net.signals[:FIRST_INKED_ROW] if net.is_recurrent else net.signals[:1]
    far = net.signals[-1]
    signal = None
    if all(name in metrics for name in (*near, far)):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.max([column(metrics, name)[span] for name in near], axis=0) / column(metrics, far)[span]
        ratios = ratios[np.isfinite(ratios)]
        signal = float(np.median(ratios)) if len(ratios) else None
    units = [c for c in metrics if c.startswith(("saturated_h", "dead_h"))]
    inactive = float(np.mean([column(metrics, c)[span] for c in units])) if units else None
    grown = sorted((name for name in growth if growth[name] is not None), key=lambda name: -growth[name])
    return {"from_step": first, "to_step": step - 1, "steps": step - first,
            "output_share": float(output_share) if np.isfinite(output_share) else None,
            "hidden_share": float(hidden_share) if np.isfinite(hidden_share) else None,
            "output_tensors": [name for name in net.names if name in output],
            "hidden_words": "the recurrent layer (" + ", ".join(n for n in net.names if n not in output) + ")"
            if net.is_recurrent else "the hidden layers",
            "growth": growth, "fastest": grown[0] if grown else None,
            "signal_near": near[0] if len(near) == 1 else f"{near[0]}-{near[-1][len('dh'):]}", "signal_far": far,
            "signal_growth": signal, "inactive": inactive,
            "inactive_kind": "dead" if any(c.startswith("dead_h") for c in units) else "saturated"}


def as_config(config: Mapping[str, Any] | Config) -> Config | None:
    """The run's Config, from a Config or config.json (None if it is not one this version reads)."""
    if isinstance(config, Config):
        return config
    try:
        return Config(**{key: tuple(value) if isinstance(value, list) else value
                         for key, value in config.items() if key in CONFIG_KEYS})
    except (TypeError, ValueError):
        return None


def cures_worth_trying(cause: str, config: Mapping[str, Any] | Config, largest_clean_input: float) -> list[str]:
    """The cause's cures that would change this setup and that its config accepts."""
    setup = as_config(config)
    names = [name for name in CURES_FOR[cause]
             if name != "scaled_inputs" or largest_clean_input > SCALED_INPUT]
    if setup is None:
        return names
    return [name for name in names if isinstance(apply_cure(BY_NAME[name], setup), Config)]


def diagnose(metrics: Mapping[str, np.ndarray], config: Mapping[str, Any] | Config, step: int,
             batches: Mapping[int, Mapping[str, Any]], largest_clean_input: float,
             update: Mapping[str, Any] | None = None) -> dict:
    """The diagnosis of a run that turned non-finite at `step`.

    metrics: the recorded columns (metrics.csv's, as arrays) up to that step at least;
    batches: per inspected step (steps_to_inspect), its batch's batch_size, largest_abs_input
    and dirty_in_batch; largest_clean_input: the largest |input| of the training set without
    its dirty examples (as they were before the dirt); update: what the step would have written
    non-finite (the summary's nonfinite_update), if anything. Returns a dict of numbers and the
    words that follow from them."""
    norms = column(metrics, "global_norm_before")
    growth = run_up(norms, step)
    outliers = [s for s in sorted(batches) if batches[s]["dirty_in_batch"] > 0
                or batches[s]["largest_abs_input"] > OUTLIER_INPUT * largest_clean_input]
    # a bad batch is to blame where the norm jumped on it, where it failed right after a calm step, or
    # where the run-up began at step 0; bad batches within a steady growth are not
    decisive = [s for s in outliers if jumped_at(norms, s, step, growth)]
    net = Net.of(config.to_dict() if isinstance(config, Config) else config)
    gains = [gain for gain in (signal_gain(metrics, 0, net.signals),
                               signal_gain(metrics, growth.get("from_step", -1), net.signals)) if gain is not None]
    gain = max(gains) if gains else None
    mechanism = run_up_mechanism(metrics, step, net)
    output_layer = output_layer_failed(mechanism)
    if net.is_recurrent and mechanism is not None and mechanism["signal_growth"] is not None:
        through_time = mechanism["signal_growth"] >= DESIGN_GAIN  # read over the run-up, not the calm
    else:
        through_time = net.is_recurrent and gain is not None and gain >= DESIGN_GAIN
    if decisive:
        cause = BAD_INPUT
    elif output_layer:  # the hidden units saturated or dead: only the output layer's step was too large
        cause = OUTPUT_LR
    elif through_time:  # what exploding gradients are in a recurrent net (Pascanu et al. 2013)
        cause = EXPLODING
    elif step == 0 or (not net.is_recurrent and gain is not None and gain >= DESIGN_GAIN):
        cause = MODEL_DESIGN
    else:
        cause = EXPLODING
    failed = first_nonfinite(metrics, step, update)
    if failed["first_nonfinite"] == "update":  # finite gradients: the rule's own arithmetic failed
        cause = NONFINITE_UPDATE
    result = {
        "step": step,
        **failed,
        "update_reason": update_reason(failed, metrics, config, step),
        "growth": growth,
        "batch": dict(batches[step]) if step in batches else None,
        "bad_batches": [dict(batches[s]) for s in decisive],
        "other_bad_batches": len(outliers) - len(decisive),
        "largest_clean_input": largest_clean_input,
        "signal_gain": gain,
        "signal_path": "the last time step back to the first rows" if net.is_recurrent else "the output layer to the first",
        "through_time": through_time,
        "run_up": mechanism,
        "clip": (config.clip if isinstance(config, Config) else config.get("clip")),
        "cause": cause,
        "cures": cures_worth_trying(cause, config, largest_clean_input),
    }
    result["text"] = diagnosis_lines(result)
    return result


def output_layer_failed(mechanism: dict | None) -> bool:
    """Whether the run-up is an output layer's learning rate that is too high: the output layer
    carried most of the global norm while most hidden units were saturated or dead, so that
    nothing flowed back and no growth through the net fed it."""
    if mechanism is None or mechanism["output_share"] is None or mechanism["output_share"] < OUTPUT_LAYER_SHARE:
        return False
    saturated = mechanism["inactive"] is not None and mechanism["inactive"] >= SATURATED
    return saturated or (mechanism["signal_growth"] is not None and mechanism["signal_growth"] < NO_SIGNAL)


def jumped_at(norms: np.ndarray, at: int, step: int, growth: dict) -> bool:
    """Whether the global norm jumped on the batch of step `at` (x JUMP_FACTOR or more from the
    step before), or that batch is the failing one after a calm step, or the first one of a
    run-up that began at step 0 (nothing before it to compare with)."""
    if at == step:
        return growth["pattern"] in ("at once", "first step")
    if at == 0:
        return growth.get("from_step") == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return bool(norms[at] / norms[at - 1] >= JUMP_FACTOR)


def number(value: float) -> str:
    if value is None or not math.isfinite(value):
        return str(value)
    return f"{value:.3g}"


def update_reason(failed: Mapping[str, Any], metrics: Mapping[str, np.ndarray], config: Mapping[str, Any] | Config,
                  step: int) -> str | None:
    """Why a step with finite gradients wrote a NaN/Inf, from the numbers float32 made of the config."""
    setup = as_config(config)
    if failed["first_nonfinite"] != "update" or setup is None:
        return None
    written = failed["written"]
    t = np.float32(step + 1)  # the optimizer's step count: every step before was applied
    if setup.optimizer == "adam" and np.float32(1) - np.float32(setup.beta1) ** t == 0:
        return (f"Adam's bias correction divided by 1 - beta1^t = 0: beta1 {setup.beta1:.10g} is "
                f"{float(np.float32(setup.beta1)):.9g} in float32, and t = {int(t)}")
    if written["what"] == "moving statistic":
        return f"batch norm's {written['tensor']} overflowed float32"
    if written["what"] != "update":
        return f"the optimizer's {written['what']} of {written['tensor']} overflowed float32"
    after = float(column(metrics, "global_norm_after")[step])
    clipped = " after clipping" if setup.clip != "none" else ""
    return (f"a step of learning rate {setup.lr:g} on gradients of global norm {number(after)}{clipped} "
            f"left float32's range (largest {float(np.finfo(np.float32).max):.3g})")


def what_failed(d: dict) -> str:
    if d["first_nonfinite"] == "update":
        written = d["written"]
        part = "update" if written["what"] == "update" else written["what"]
        return (f"the {part} of {written['tensor']} became {d['value']} with finite gradients, the loss still finite "
                f"({number(d['loss'])}): the step was not applied")
    if d["first_nonfinite"] == "loss":
        return f"the loss became {d['value']}"
    if d["first_nonfinite"] == "global_norm":
        return "the global gradient norm overflowed float32 (Inf) while each tensor's stayed finite"
    others = [name for name in d["nonfinite_gradients"] if name != d["first_nonfinite"]]
    shown = ", ".join(others[:SHOWN_TENSORS]) + (f" and {len(others) - SHOWN_TENSORS} more"
                                                 if len(others) > SHOWN_TENSORS else "")
    also = f" (then {shown})" if others else ""
    return f"the gradient of {d['first_nonfinite']} became {d['value']}{also}, the loss still finite ({number(d['loss'])})"


def growth_words(growth: dict) -> str:
    pattern = growth["pattern"]
    if pattern == "first step":
        return "at the very first step, before any update"
    if pattern == "at once":
        calm = f" (median {number(growth['calm_norm'])} before)" if growth.get("calm_norm") else ""
        return f"in one step from a global norm of {number(growth['to_norm'])} at step {growth['to_step']}{calm}"
    span = (f"{number(growth['from_norm'])} at step {growth['from_step']} -> {number(growth['to_norm'])} "
            f"at step {growth['to_step']}")
    if pattern == "jump":
        then = ""
        if growth["steps"] > 1:
            later = (growth["to_norm"] / growth["from_norm"] / growth["jump_factor"]) ** (1 / (growth["steps"] - 1))
            then = f", then x{number(later)} per step"
        return (f"after a sudden jump: the global norm rose x{number(growth['jump_factor'])} in one step at step "
                f"{growth['jump_step']} (median {number(growth['calm_norm'])} before){then} ({span})")
    steps = "step" if growth["steps"] == 1 else f"{growth['steps']} steps"
    return f"the global norm grew x{number(growth['per_step'])} per step over the {steps} before ({span})"


def batch_words(d: dict) -> str:
    batch = d["batch"]
    words = []
    if batch is not None:
        dirty = batch["dirty_in_batch"]
        words.append(f"its batch: largest |input| {number(batch['largest_abs_input'])}, "
                     f"{dirty if dirty else 'no'} dirty example{'' if dirty == 1 else 's'}")
    earlier = [b for b in d["bad_batches"] if batch is None or b["step"] != batch["step"]]
    for bad in earlier[:SHOWN_BATCHES]:
        words.append(f"step {bad['step']}'s batch: {bad['dirty_in_batch']} dirty "
                     f"(largest |input| {number(bad['largest_abs_input'])})")
    if len(earlier) > SHOWN_BATCHES:
        words.append(f"{len(earlier) - SHOWN_BATCHES} more such batches")
    others = d.get("other_bad_batches", 0)
    if others:
        words.append(f"{others} other batch{'es' if others > 1 else ''} of the run-up held bad input, with no jump in "
                     "the global norm")
    words.append(f"clean data at most {number(d['largest_clean_input'])}")
    return "; ".join(words)


def percent(share: float) -> str:
    return f"{100 * share:.0f}%"


def layer_words(m: dict) -> str:
    """The output layer's tensors, e.g. "the output layer (wo, bo)"."""
    return f"the output layer ({', '.join(m['output_tensors'])})"


def cause_words(d: dict) -> str:
    cause = d["cause"]
    m = d.get("run_up")
    if cause == BAD_INPUT:
        bad = [str(b["step"]) for b in d["bad_batches"]]
        steps = ", ".join(bad[:SHOWN_BATCHES]) + (f" and {len(bad) - SHOWN_BATCHES} more" if len(bad) > SHOWN_BATCHES else "")
        why = f"the batch{'es' if len(bad) > 1 else ''} of step{'s' if len(bad) > 1 else ''} {steps} held inputs far beyond the clean data's"
    elif cause == OUTPUT_LR:
        output_growth = max((m["growth"][name] or 0.0) for name in m["output_tensors"])
        flowed = []
        if m["inactive"] is not None:
            flowed.append(f"{percent(m['inactive'])} of the hidden units {m.get('inactive_kind', 'saturated')}")
        if m["signal_growth"] is not None:
            flowed.append(f"{m['signal_near']} / {m['signal_far']} {number(m['signal_growth'])}")
        why = (f"over steps {m['from_step']}-{m['to_step']}, {layer_words(m)} carried {percent(m['output_share'])} "
               f"of the squared global norm and its gradient grew x{number(output_growth)} per step, while almost "
               f"no signal flowed back ({', '.join(flowed)})")
        if d.get("signal_gain") is not None and d["signal_gain"] >= DESIGN_GAIN:
            unclipped = ("; unclipped, their large steps then saturated the units" if d.get("clip") == "none"
                         else "")
            why += (f". Earlier, back-propagation through time had multiplied the signal x{number(d['signal_gain'])} "
                    f"(from the last time step back to the first): those are the steps clipping acts on{unclipped}"
                    if d.get("signal_path", "").startswith("the last time step")
                    else f". Earlier the signal grew x{number(d['signal_gain'])} on its way back")
    elif cause == MODEL_DESIGN:
        why = (f"the net multiplies the back-propagated signal x{number(d['signal_gain'])} from "
               f"{d.get('signal_path', 'the output layer to the first')}"
               if d["signal_gain"] is not None and d["signal_gain"] >= DESIGN_GAIN
               else "the net's first step, from its initial weights, is already non-finite")
    elif cause == NONFINITE_UPDATE:
        why = d.get("update_reason") or "the update rule's arithmetic left float32's range"
    elif d.get("through_time"):
        if m is not None and m["signal_growth"] is not None:
            why = (f"back-propagation through time multiplies the signal x{number(m['signal_growth'])} from "
                   f"{d['signal_path']} over steps {m['from_step']}-{m['to_step']} "
                   f"({m['signal_near']} / {m['signal_far']}, median)")
        else:
            why = (f"back-propagation through time multiplies the signal x{number(d['signal_gain'])} from "
                   f"{d['signal_path']}")
    else:
        why = "the updates themselves made the gradients grow"
        if m is not None and m["output_share"] is not None and m["output_share"] >= OUTPUT_LAYER_SHARE:
            why += f", {layer_words(m)} carrying {percent(m['output_share'])} of the squared global norm"
    if cause not in (BAD_INPUT, NONFINITE_UPDATE) and d["largest_clean_input"] > SCALED_INPUT:
        why += f"; the inputs reach {number(d['largest_clean_input'])}, not scaled to 0..1"
    return f"likely cause: {cause} ({why})"


def run_up_words(m: dict | None) -> str | None:
    """The run-up's numbers: which gradients grew and how fast, each part's share of the norm,
    the signal back through the net and the inactive units."""
    if m is None:
        return None
    grown = sorted((name for name, factor in m["growth"].items() if factor is not None),
                   key=lambda name: -m["growth"][name])
    shown = ", ".join(f"{name} x{number(m['growth'][name])}" for name in grown[:3])
    rest = grown[3:]
    if rest:
        shown += f", the other {len(rest)} at most x{number(m['growth'][rest[0]])}"
    steps = f"step {m['to_step']}" if m["steps"] == 1 else f"steps {m['from_step']}-{m['to_step']}"
    words = [f"the run-up ({steps}): gradients per step {shown}" if m["steps"] > 1 else f"the run-up ({steps})"]
    if m["output_share"] is not None:
        words.append(f"{layer_words(m)} carried {percent(m['output_share'])} of the squared global norm, "
                     f"{m.get('hidden_words', 'the other layers')} {percent(m['hidden_share'])}")
    if m["signal_growth"] is not None:
        words.append(f"{m['signal_near']} / {m['signal_far']} {number(m['signal_growth'])}")
    if m["inactive"] is not None:
        words.append(f"{percent(m['inactive'])} of hidden units {m.get('inactive_kind', 'saturated')}")
    return "; ".join(words) + "."


def diagnosis_lines(d: dict) -> list[str]:
    """Two or three lines, every word from the diagnosis' numbers: what failed and how, the
    likely cause and its cures, then the run-up's numbers."""
    first = f"diverged at step {d['step']}: {what_failed(d)}, {growth_words(d['growth'])}; {batch_words(d)}."
    cures = (f"; cures worth trying: {', '.join(d['cures'])}: `mnist-clip cures` (mc.cures in Python) with this "
             "run's options trains each beside it" if d["cures"] else "; none of the listed cures applies to this setup")
    evidence = run_up_words(d.get("run_up"))
    return [first, cause_words(d) + cures + ".", *([evidence] if evidence else [])]


def describe(summary: Mapping[str, Any] | None) -> list[str]:
    """A run's diagnosis lines from its summary.json (none for a run that did not diverge, or
    one written before runs were diagnosed)."""
    diagnosis = (summary or {}).get("diagnosis")
    return list(diagnosis.get("text", [])) if isinstance(diagnosis, dict) else []
