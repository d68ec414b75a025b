"""The clipping methods' rules in TensorFlow, as pure functions: (list of gradients, threshold) ->
clipped list; and a step's clipping with what it logs. What each method compares, its columns
and its words are declared in methods.py."""

from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf

ClipFn = Callable[[Sequence[tf.Tensor], float], list]


def clip_none(grads: Sequence[tf.Tensor], threshold: float) -> list:
    return list(grads)


def clip_global_norm(grads: Sequence[tf.Tensor], threshold: float) -> list:
    """Every tensor times threshold / max(global_norm, threshold): ratios between tensors survive."""
    clipped, _ = tf.clip_by_global_norm(list(grads), threshold)
    return clipped


def clip_norm(grads: Sequence[tf.Tensor], threshold: float) -> list:
    """tf.clip_by_norm on each tensor on its own."""
    return [tf.clip_by_norm(g, threshold) for g in grads]


def clip_value(grads: Sequence[tf.Tensor], threshold: float) -> list:
    """Each element clamped to [-threshold, threshold]."""
    return [tf.clip_by_value(g, -threshold, threshold) for g in grads]


def clip_by_average_norm(t: tf.Tensor, threshold: float) -> tf.Tensor:
    """What tf.compat.v1.clip_by_average_norm computes: t * c / max(l2(t) / N, c),
    with N the number of elements (the "average norm" is l2 / N, not the RMS)."""
    n_elements = tf.cast(tf.size(t), t.dtype)
    l2norm_inv = tf.math.rsqrt(tf.reduce_sum(t * t))
    return t * threshold * tf.minimum(l2norm_inv * n_elements, 1.0 / threshold)


def clip_average_norm(grads: Sequence[tf.Tensor], threshold: float) -> list:
    return [clip_by_average_norm(g, threshold) for g in grads]


CLIP_FUNCTIONS: dict[str, ClipFn] = {
    "global_norm": clip_global_norm,
    "norm": clip_norm,
    "value": clip_value,
    "average_norm": clip_average_norm,
    "none": clip_none,
}


def clip_with_norms(method: str, grads: Sequence[tf.Tensor], threshold: float, norms: Sequence[tf.Tensor],
                    global_norm: tf.Tensor | None = None) -> list:
    """CLIP_FUNCTIONS[method], reusing the tensors' L2 norms where TensorFlow takes them
    (clip_by_global_norm's use_norm), which saves a pass over every gradient."""
    if method == "global_norm":
        clipped, _ = tf.clip_by_global_norm(list(grads), threshold, use_norm=tf.norm(tf.stack(norms)) if global_norm is None else global_norm)
        return clipped
    return CLIP_FUNCTIONS[method](grads, threshold)


def clip_fired(method: str, grads: Sequence[tf.Tensor], threshold: float, norms: Sequence[tf.Tensor] | None = None) -> list:
    """Per tensor, whether the method's condition holds, i.e. clipping acted on it.

    Comparing tensors before and after is no test: t * c / c is not always t in
    float32, so a tensor under the threshold can still come back a bit changed.
    `norms`, the tensors' L2 norms if already at hand, saves a pass over them.
    """
    if norms is None:
        norms = [tf.norm(g) for g in grads]
    if method == "none":
        return [tf.constant(False) for _ in grads]
    if method == "global_norm":
        fired = tf.norm(tf.stack(norms)) > threshold
        return [fired for _ in grads]
    if method == "norm":
        return [n > threshold for n in norms]
    if method == "value":
        return [tf.reduce_any(tf.abs(g) > threshold) for g in grads]
    if method == "average_norm":
        return [n / tf.cast(tf.size(g), g.dtype) > threshold for g, n in zip(grads, norms)]
    raise ValueError(f"unknown clip method {method}")


def clipped_norms(method: str, clipped: Sequence[tf.Tensor], norms: Sequence[tf.Tensor], threshold: float) -> list:
    """The L2 norms of the clipped tensors.

    The scaling methods multiply a tensor g by a factor s >= 0, and ||s g|| = s ||g||,
    so their norms after follow from the norms before without another pass over
    every gradient (the largest cost of logging). clip_by_value is no scaling:
    its clipped tensors are measured.
    """
    if method == "none":
        return list(norms)
    if method == "global_norm":
        global_norm = tf.norm(tf.stack(norms))
        # tf.clip_by_global_norm's factor, NaN when the global norm is not finite
        scale = threshold * tf.minimum(1.0 / global_norm, 1.0 / threshold) + (global_norm - global_norm)
        return [n * scale for n in norms]
    if method == "norm":
        return [n * threshold / tf.maximum(n, threshold) for n in norms]
    if method == "average_norm":
        return [n * threshold * tf.minimum(tf.cast(tf.size(c), c.dtype) / n, 1.0 / threshold) for c, n in zip(clipped, norms)]
    return [tf.norm(c) for c in clipped]


# --- Adaptive gradient clipping (AGC, Brock et al. 2021), as optax.adaptive_grad_clip ---

AGC_EPS = 1e-3  # optax's eps: the smallest parameter norm a unit's threshold is built on
AGC_DIV_EPS = 1e-6  # optax's guard against dividing by a zero gradient norm


def unitwise_norm(x: tf.Tensor) -> tf.Tensor:
    """optax's unitwise_norm: a vector (or a tensor with one non-unit axis) has one norm;
    a weight [fan_in, fan_out] has one per output unit, over the fan-in axis (shape [1, fan_out])."""
    if sum(1 for size in x.shape if size != 1) <= 1:
        return tf.sqrt(tf.reduce_sum(x * x, keepdims=True))
    return tf.sqrt(tf.reduce_sum(x * x, axis=0, keepdims=True))


def agc_clip(grads: Sequence[tf.Tensor], params: Sequence[tf.Tensor], clipping: float):
    """Each unit's gradient g is kept where ||g|| < clipping * max(||w||, 1e-3) and otherwise
    scaled to g * max_norm / max(||g||, 1e-6), with w the unit's parameters before the update.

    Returns (clipped gradients, per tensor: whether any unit was clipped, the fraction of its
    units clipped, the largest ||g|| / max(||w||, 1e-3) over its units, its L2 norm after and
    before). Both norms come from the unit norms: no extra pass over any gradient.
    """
    clipped, fired, fractions, ratios, norms_after, norms_before = [], [], [], [], [], []
    for g, w in zip(grads, params):
        g_norm = unitwise_norm(g)
        norms_before.append(tf.sqrt(tf.reduce_sum(g_norm * g_norm)))
        w_floor = tf.maximum(unitwise_norm(w), AGC_EPS)
        max_norm = clipping * w_floor
        keep = g_norm < max_norm
        scale = max_norm / tf.maximum(g_norm, AGC_DIV_EPS)
        clipped.append(tf.where(keep, g, g * scale))
        fired.append(tf.reduce_any(tf.logical_not(keep)))
        fractions.append(tf.reduce_mean(tf.cast(tf.logical_not(keep), tf.float32)))
        ratios.append(tf.reduce_max(g_norm / w_floor))
        # every unit's norm after is its norm before, or before * scale: no second pass over g
        unit_after = tf.where(keep, g_norm, g_norm * scale)
        norms_after.append(tf.sqrt(tf.reduce_sum(unit_after * unit_after)))
    return clipped, fired, fractions, ratios, norms_after, norms_before


# --- AutoClip (Seetharaman et al. 2020): a percentile of all global norms so far ---

class AutoClipHistory:
    """Every step's global gradient norm, kept sorted in a fixed-size variable so that the
    compiled loop can insert one value and read a percentile without Python.

    The threshold of a step is numpy.percentile(history, p) with linear interpolation,
    the step's own norm included. A non-finite norm is not added (it would make every
    later threshold NaN); such a step stops the run unless --on-nonfinite continue.
    """

    def __init__(self, capacity: int, percentile: float, variables: tuple | None = None):
        self.percentile = float(percentile)
        if variables is None:
            capacity = max(1, int(capacity))
            variables = (tf.Variable(tf.fill([capacity], float("inf")), trainable=False, name="autoclip_history"),
                         tf.Variable(0, trainable=False, name="autoclip_count"))
        self.sorted, self.count = variables
        self.capacity = int(self.sorted.shape[0])

    def variables(self) -> tuple:
        return (self.sorted, self.count)

    @classmethod
    def bound(cls, sorted_history, count, percentile: float) -> "AutoClipHistory":
        """The history held in these variables (inside a compiled program that gets them as inputs)."""
        return cls(0, percentile, (sorted_history, count))

    def add_and_threshold(self, global_norm: tf.Tensor) -> tf.Tensor:
        # Work on values read once and assign the results: reading the variables back
        # after assigning them made XLA's program a thousand times slower.
        history = self.sorted.read_value()
        finite = tf.math.is_finite(global_norm)
        index = tf.searchsorted(history, tf.reshape(global_norm, [1]), side="right")[0]
        positions = tf.range(self.capacity)
        shifted = tf.concat([history[:1], history[:-1]], axis=0)
        inserted = tf.where(positions < index, history, tf.where(positions == index, global_norm, shifted))
        updated = tf.where(finite, inserted, history)
        count = self.count.read_value() + tf.cast(finite, tf.int32)
        self.sorted.assign(updated)
        self.count.assign(count)
        # numpy's "linear" method over the `count` values now in the history
        last = tf.maximum(count - 1, 0)
        rank = self.percentile / 100.0 * tf.cast(last, tf.float32)
        low = tf.cast(tf.floor(rank), tf.int32)
        pair = tf.gather(updated, tf.stack([low, tf.minimum(low + 1, last)]))
        threshold = pair[0] + (pair[1] - pair[0]) * (rank - tf.cast(low, tf.float32))
        return tf.where(count > 0, threshold, tf.constant(float("nan")))


def clip_only(method: str, grads: Sequence[tf.Tensor], params: Sequence[tf.Tensor], threshold,
              autoclip: AutoClipHistory | None = None) -> list:
    """The clipped gradients alone, for a loop that logs nothing (the benchmark's baseline)."""
    if method == "agc":
        return agc_clip(grads, params, threshold)[0]
    if method == "autoclip":
        global_norm = tf.linalg.global_norm(list(grads))
        return clip_global_norm(grads, autoclip.add_and_threshold(global_norm))
    return CLIP_FUNCTIONS[method](grads, threshold)


def clip_step(method: str, grads: Sequence[tf.Tensor], params: Sequence[tf.Tensor] | None, threshold,
              autoclip: AutoClipHistory | None = None, norms: Sequence[tf.Tensor] | None = None,
              global_norm: tf.Tensor | None = None) -> tuple:
    """A step's clipping and what it logs: (clipped gradients, per tensor whether it fired,
    norms before, global norm before, norms after, the values of the method's extra columns in
    the order training.methods declares them). For autoclip, `autoclip` holds the history the
    step's threshold comes from. `norms` and `global_norm`, the gradients' norms if already at
    hand, save a pass over them; `params` are needed by agc only."""
    if method == "agc":  # its unit norms give the tensors' norms too
        clipped, fired, fractions, ratios, norms_after, norms_before = agc_clip(grads, params, threshold)
        return (clipped, fired, norms_before, tf.norm(tf.stack(norms_before)), norms_after,
                [tf.cast(threshold, tf.float32), *fractions, *ratios])
    norms_before = list(norms) if norms is not None else [tf.norm(g) for g in grads]
    global_before = global_norm if global_norm is not None else tf.norm(tf.stack(norms_before))
    extra = []
    if method == "autoclip":
        threshold = autoclip.add_and_threshold(global_before)
        extra = [threshold]
    rule = "global_norm" if method == "autoclip" else method
    clipped = clip_with_norms(rule, grads, threshold, norms_before, global_before)
    norms_after = clipped_norms(rule, clipped, norms_before, threshold)
    fired = clip_fired(rule, grads, threshold, norms_before)
    if method == "value":
        extra = [tf.reduce_max(tf.abs(g)) for g in grads]
    return clipped, fired, norms_before, global_before, norms_after, extra
