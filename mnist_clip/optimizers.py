"""The optimizers' update rules, as Keras 3 writes them, on state that lives in the compiled loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import tensorflow as tf

from mnist_clip.config import Config


@dataclass(frozen=True)
class UpdateRule:
    """One optimizer's kind and the settings that change its program (not its numbers, which
    are the program's inputs): which state it keeps per trained tensor, and in what order."""

    kind: str  # sgd, adam, rmsprop
    momentum: bool = False  # sgd, rmsprop: keeps a velocity (Keras: only when momentum != 0)
    nesterov: bool = False

    @classmethod
    def of(cls, config: Config) -> "UpdateRule":
        return cls(config.optimizer, config.momentum != 0 and config.optimizer != "adam",
                   config.nesterov and config.optimizer == "sgd")

    @property
    def slots(self) -> tuple[str, ...]:
        """The state kept per trained tensor (Keras's names)."""
        if self.kind == "adam":
            return ("momentum", "velocity")
        if self.kind == "rmsprop":
            return ("velocity", "momentum") if self.momentum else ("velocity",)
        return ("momentum",) if self.momentum else ()


def hyperparameters(config: Config) -> tf.Tensor:
    """The numbers the rules read, as one input vector. Keras computes 1 - beta and 1 - rho in
    Python (float64) before they meet float32 tensors; so does this, for the same float32 values."""
    return tf.constant([config.lr, config.momentum, config.beta1, config.beta2, config.epsilon, config.rho,
                        1 - config.beta1, 1 - config.beta2, 1 - config.rho], tf.float32)


class OptimizerState:
    """The rule's state: zero slots for every trained tensor and the count of steps applied."""

    def __init__(self, rule: UpdateRule, variables: Sequence[tf.Variable], trained: Sequence[bool]):
        self.rule = rule
        self.slots = [[tf.Variable(tf.zeros_like(v), trainable=False, name=f"{slot}_{i}") for slot in rule.slots]
                      if is_trained else [] for i, (v, is_trained) in enumerate(zip(variables, trained))]
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")

    def variables(self) -> tuple:
        return (self.iterations, [slot for slots in self.slots for slot in slots])


def apply_updates(rule: UpdateRule, variables: Sequence[tf.Variable], gradients: Sequence[tf.Tensor],
                  trained: Sequence[bool], iterations: tf.Variable, slot_variables: Sequence[tf.Variable],
                  hyper: tf.Tensor) -> list[tf.Tensor]:
    """Apply one step to the trained variables; return the step each took (up to its sign;
    None where frozen), whose L2 norm is ||theta_after - theta_before||.

    Each formula is Keras 3's update_step, operation for operation, so that float32 results agree.
    """
    lr, momentum, beta1, beta2, epsilon, rho, one_minus_beta1, one_minus_beta2, one_minus_rho = tf.unstack(hyper)
    slots = iter(slot_variables)
    step = tf.cast(iterations + 1, tf.float32)
    if rule.kind == "adam":
        alpha = lr * tf.sqrt(1 - tf.pow(beta2, step)) / (1 - tf.pow(beta1, step))
    # New state is computed from values read once, then assigned: reading a variable back
    # after assigning it inside the XLA loop is what makes such programs slow.
    updates = []
    for variable, g, is_trained in zip(variables, gradients, trained):
        if not is_trained:
            updates.append(None)
            continue
        if rule.kind == "adam":
            m_slot, v_slot = next(slots), next(slots)
            m = m_slot + (g - m_slot) * one_minus_beta1
            v = v_slot + (tf.square(g) - v_slot) * one_minus_beta2
            m_slot.assign(m)
            v_slot.assign(v)
            decrement = (m * alpha) / (tf.sqrt(v) + epsilon)
            variable.assign_sub(decrement)
            updates.append(decrement)
            continue
        if rule.kind == "rmsprop":
            v_slot = next(slots)
            v = v_slot * rho + one_minus_rho * tf.square(g)
            v_slot.assign(v)
            decrement = (lr * g) / tf.sqrt(v + epsilon)
            if rule.momentum:
                velocity_slot = next(slots)
                decrement = momentum * velocity_slot + decrement
                velocity_slot.assign(decrement)
            variable.assign_sub(decrement)
            updates.append(decrement)
            continue
        if rule.momentum:
            m_slot = next(slots)
            m = m_slot * momentum - g * lr
            m_slot.assign(m)
            increment = m * momentum - g * lr if rule.nesterov else m
            variable.assign_add(increment)
            updates.append(increment)
            continue
        variable.assign_sub(g * lr)  # plain SGD, the reference's w -= lr * g
        updates.append(g * lr)
    iterations.assign_add(1)
    return updates
