"""The probe's half inside the compiled step: a Keras optimizer around the user's that measures
every gradient before and after clipping and the step it applies, into buffer variables."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import tensorflow as tf

from mnist_clip.errors import InputError
from mnist_clip.probe_schema import WEIGHT_ROLES, role_of_path, value_columns
from mnist_clip.training import clipping

KERAS_CLIPPING = (("global_clipnorm", "global_norm"), ("clipnorm", "norm"), ("clipvalue", "value"))
DEFAULT_STEPS_PER_EPOCH = 4096  # a custom loop's buffer, unless the probe is told its epoch's length
AUTOCLIP_HISTORY = 65536  # AutoClip's sorted history in a custom loop of unknown length


# tf.nn.l2_loss is one fused kernel per tensor (sum of squares / 2): the cheapest norm TensorFlow has.
def tensor_norms(tensors) -> tf.Tensor:
    return tf.sqrt(2.0 * tf.stack([tf.nn.l2_loss(t) for t in tensors]))


def difference_norms(ends, starts) -> tf.Tensor:
    return tf.sqrt(2.0 * tf.stack([tf.nn.l2_loss(end - start) for end, start in zip(ends, starts)]))


def value_clipping_norms(tensors, threshold):
    """Each tensor's largest |element| and its L2 norm after clipping each element to +-threshold."""
    largest = tf.stack([tf.reduce_max(tf.abs(t)) for t in tensors])
    return largest, tensor_norms([tf.clip_by_value(t, -threshold, threshold) for t in tensors])


def read(variable) -> tf.Tensor:
    """A Keras variable's value now, as a tensor (ordered with the variable's updates)."""
    return tf.convert_to_tensor(variable.value)


def keras_clipping(optimizer) -> tuple[str, float] | None:
    """(method, threshold) of an optimizer's own clipnorm, global_clipnorm or clipvalue, or None."""
    for attribute, method in KERAS_CLIPPING:
        value = getattr(optimizer, attribute, None)
        if value:
            return method, float(value)
    return None


def check_wrappable(optimizer) -> None:
    """The one-line refusals: not a Keras optimizer, already wrapped, loss scaling, accumulation."""
    if isinstance(optimizer, ProbedOptimizer) or getattr(optimizer, "_mnist_clip_probed", False):
        raise InputError("optimizer: already wrapped by a GradientProbe; wrap the plain Keras optimizer once")
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise InputError(f"optimizer: not a Keras 3 optimizer (got {type(optimizer).__name__}); give one such as "
                         "keras.optimizers.Adam(1e-3)")
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) or getattr(optimizer, "loss_scale_factor", None):
        raise InputError("optimizer: loss scaling (LossScaleOptimizer, loss_scale_factor) is not supported: its "
                         "gradients are multiplied by the loss scale, so their norms and any clipping of them would be "
                         "off by that factor; wrap the inner optimizer and train in float32")
    if getattr(optimizer, "gradient_accumulation_steps", None):
        raise InputError("optimizer: gradient_accumulation_steps is not supported: the optimizer applies a step only "
                         "every few batches, so a batch's gradient is not the step it applies")


class Recorder:
    """Buffer variables the compiled step writes one row into per step (indexed by the step within
    the epoch), read by the host once per epoch."""

    def __init__(self, variables: Sequence, clip: str, threshold: float, percentile: float, clip_by_probe: bool,
                 on_nonfinite: str, capacity: int, history: int):
        self.variables = list(variables)
        self.paths = [v.path for v in self.variables]
        self.index = {id(v): i for i, v in enumerate(self.variables)}
        self.weights = [i for i, v in enumerate(self.variables) if role_of_path(v.path) in WEIGHT_ROLES]
        self.clip, self.threshold, self.percentile = clip, float(threshold), float(percentile)
        self.clip_by_probe = clip_by_probe
        self.stop_on_nonfinite = on_nonfinite == "stop"
        self.width = len(value_columns(self.paths, [self.paths[i] for i in self.weights], clip))
        with tf.init_scope():
            self.capacity = int(capacity)
            self.rows = tf.Variable(tf.zeros([self.capacity, self.width]), trainable=False, name="probe_rows")
            self.count = tf.Variable(0, trainable=False, name="probe_count")
            self.halted = tf.Variable(False, trainable=False, name="probe_halted")
            self.autoclip = (clipping.AutoClipHistory(history, percentile) if clip == "autoclip" and clip_by_probe
                             else None)
        self.pending_loss = None

    def reset_epoch(self) -> None:
        self.count.assign(0)

    def read_epoch(self):
        """(rows of the epoch's steps as float64, how many steps it had): the host's one read."""
        count = int(self.count.numpy())
        return self.rows[: min(count, self.capacity)].numpy().astype("float64"), count

    def step(self, inner, grads: list, variables: list) -> None:
        """Measure, clip (when the probe clips), apply unless non-finite, record one row."""
        loss = self.pending_loss
        self.pending_loss = None
        if loss is None:
            raise InputError("no loss for this step: in your own loop call `probe.record_loss(loss)` (or "
                             "`loss = optimizer.scale_loss(loss)`) inside the step, before apply_gradients")
        given = {self.index[id(v)]: g for g, v in zip(grads, variables) if id(v) in self.index and g is not None}
        measured = [given[i] if i in given else tf.zeros_like(v) for i, v in enumerate(self.variables)]
        norms = tensor_norms(measured)
        global_before = tf.sqrt(tf.reduce_sum(tf.square(norms)))
        applied_grads = list(grads)
        extra = []
        if self.clip_by_probe:
            clipped, after, fired, extra = self._probe_clipping(measured, norms, global_before)
            applied_grads = [clipped[self.index[id(v)]] if id(v) in self.index and g is not None else g
                             for g, v in zip(grads, variables)]
        else:
            after, fired, extra = self._keras_clipping(measured, norms, global_before)
        global_after = tf.sqrt(tf.reduce_sum(tf.square(after)))
        finite = tf.math.is_finite(global_before) & tf.math.is_finite(tf.cast(loss, tf.float32))
        starts = [read(v) for v in self.variables]  # before the update

        def apply() -> None:
            inner.apply(applied_grads, variables)

        if self.stop_on_nonfinite:
            go = finite & tf.logical_not(self.halted)
            tf.cond(go, apply, lambda: None)
            self.halted.assign(tf.logical_not(go))
        else:
            apply()
        updates = difference_norms([read(v) for v in self.variables], starts)
        weight_norms = tensor_norms([starts[i] for i in self.weights]) if self.weights else tf.zeros([0])
        fired = tf.cast(fired, tf.float32)
        row = tf.concat([tf.stack([tf.cast(loss, tf.float32), global_before, global_after,
                                   tf.reduce_max(fired)]),
                         tf.reshape(tf.stack([norms, after], axis=1), [-1]), fired, *extra, updates,
                         weight_norms], axis=0)
        index = tf.minimum(self.count, self.capacity - 1)
        self.rows.scatter_nd_update(tf.reshape(index, [1, 1]), tf.reshape(row, [1, self.width]))
        self.count.assign_add(1)

    def _keras_clipping(self, grads: list, norms, global_before):
        """The norms after the inner optimizer's own clipping (Keras's exact rules, in
        BaseOptimizer._clip_gradients), and where it acted; the optimizer clips by itself."""
        c = self.threshold
        if self.clip == "global_norm":
            scale = c * tf.minimum(1.0 / global_before, 1.0 / c) + (global_before - global_before)
            return norms * scale, tf.fill([len(grads)], global_before > c), []
        if self.clip == "norm":
            return norms * c / tf.maximum(norms, c), norms > c, []
        if self.clip == "value":
            largest, after = value_clipping_norms(grads, tf.constant(c))
            return after, largest > c, [largest]
        return norms, tf.zeros([len(grads)], tf.bool), []

    def _probe_clipping(self, grads: list, norms, global_before):
        """The product's clipping methods (mnist_clip.training.clipping), applied by the probe."""
        params = [read(v) for v in self.variables] if self.clip == "agc" else None
        clipped, fired, _, _, after, extra = clipping.clip_step(
            self.clip, grads, params, self.threshold, self.autoclip, norms=tf.unstack(norms), global_norm=global_before)
        return clipped, tf.stack(after), tf.stack(fired), [tf.reshape(tf.stack(extra), [-1])] if extra else []


@keras.saving.register_keras_serializable(package="mnist_clip")
class ProbedOptimizer(keras.optimizers.Optimizer):
    """The user's optimizer, watched: `apply` measures the gradients, lets the inner optimizer (or
    the probe) clip them, applies them unless they are non-finite, and records the step. The
    inner optimizer's update and state are its own: the weights equal those it gives alone."""

    def __init__(self, inner_optimizer, probe=None, name: str | None = None, **kwargs: Any):
        super().__init__(learning_rate=0.0, name=name or f"probed_{inner_optimizer.name}")
        self.inner_optimizer = inner_optimizer
        self._probe = probe

    def build(self, var_list) -> None:
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    def apply(self, grads, trainable_variables=None) -> None:
        if trainable_variables is None:
            trainable_variables = self.inner_optimizer._trainable_variables
        trainable_variables = list(trainable_variables)
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
            self.built = True
        self._probe._recorder_for(trainable_variables).step(self.inner_optimizer, list(grads), trainable_variables)

    def scale_loss(self, loss):
        if self._probe is not None and self._probe._recorder is not None:
            self._probe._recorder.pending_loss = loss
        return self.inner_optimizer.scale_loss(loss)

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate) -> None:
        if hasattr(self, "inner_optimizer"):  # the base class sets it before the inner optimizer is known
            self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def finalize_variable_values(self, var_list) -> None:
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self) -> dict:
        return {"name": self.name,
                "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer)}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        """A model saved with a probed optimizer loads with the plain one: the probe is not saved."""
        return keras.saving.deserialize_keras_object(config["inner_optimizer"], custom_objects=custom_objects)
