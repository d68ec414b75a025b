"""The optimizers' update rules, as Keras 3 writes them, on state that lives in the compiled loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

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


class NextState(NamedTuple):
    """One step of a rule as values, nothing assigned yet: the new weights (None where frozen),
    the new slot values in the state's order, and the step each trained tensor takes (up to its
    sign; None where frozen), whose L2 norm is ||theta_after - theta_before||."""

    weights: list
    slots: list
    steps: list


def next_state(rule: UpdateRule, weights: Sequence[tf.Tensor], gradients: Sequence[tf.Tensor],
               trained: Sequence[bool], iterations: tf.Tensor, slots: Sequence[tf.Tensor],
               hyper: tf.Tensor) -> NextState:
    """The rule's step from the values read at its start (weights, slots, the count of steps
    applied). The caller commits the result, or not: nothing is assigned here.

    Each formula is Keras 3's update_step, operation for operation, so that float32 results agree.
    """
    lr, momentum, beta1, beta2, epsilon, rho, one_minus_beta1, one_minus_beta2, one_minus_rho = tf.unstack(hyper)
    slots = iter(slots)
    step = tf.cast(iterations + 1, tf.float32)
    if rule.kind == "adam":
        alpha = lr * tf.sqrt(1 - tf.pow(beta2, step)) / (1 - tf.pow(beta1, step))
    new_weights, new_slots, steps = [], [], []
    for weight, g, is_trained in zip(weights, gradients, trained):
        if not is_trained:
            new_weights.append(None)
            steps.append(None)
            continue
        if rule.kind == "adam":
            m_old, v_old = next(slots), next(slots)
            m = m_old + (g - m_old) * one_minus_beta1
            v = v_old + (tf.square(g) - v_old) * one_minus_beta2
            decrement = (m * alpha) / (tf.sqrt(v) + epsilon)
            new_slots += [m, v]
            new_weights.append(weight - decrement)
            steps.append(decrement)
        elif rule.kind == "rmsprop":
            v = next(slots) * rho + one_minus_rho * tf.square(g)
            new_slots.append(v)
            decrement = (lr * g) / tf.sqrt(v + epsilon)
            if rule.momentum:
                decrement = momentum * next(slots) + decrement
                new_slots.append(decrement)
            new_weights.append(weight - decrement)
            steps.append(decrement)
        elif rule.momentum:
            m = next(slots) * momentum - g * lr
            new_slots.append(m)
            increment = m * momentum - g * lr if rule.nesterov else m
            new_weights.append(weight + increment)
            steps.append(increment)
        else:
            decrement = g * lr  # plain SGD, the reference's w -= lr * g
            new_weights.append(weight - decrement)
            steps.append(decrement)
    return NextState(new_weights, new_slots, steps)
