"""The clipping methods, as pure functions: (list of gradients, threshold) -> clipped list."""

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


def clip_with_norms(method: str, grads: Sequence[tf.Tensor], threshold: float, norms: Sequence[tf.Tensor]) -> list:
    """CLIP_FUNCTIONS[method], reusing the tensors' L2 norms where TensorFlow takes them
    (clip_by_global_norm's use_norm), which saves a pass over every gradient."""
    if method == "global_norm":
        clipped, _ = tf.clip_by_global_norm(list(grads), threshold, use_norm=tf.norm(tf.stack(norms)))
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
