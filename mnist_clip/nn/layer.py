"""What every layer kind is: a frozen value that names its tensors and answers every question the
rest of the package asks of a layer. No TensorFlow here: each kind imports it where it computes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

N_INPUTS = 784
N_CLASSES = 10
N_ROWS = 28  # a recurrent net reads an image as 28 time steps of 28 pixels
ROW_WIDTH = N_INPUTS // N_ROWS
NORM_EPSILON = 1e-3  # Keras's BatchNormalization and LayerNormalization
BATCH_NORM_MOMENTUM = 0.99


@dataclass(frozen=True)
class Tensor:
    """A trained tensor: its name (a column prefix in metrics.csv), shape, role and layer."""

    name: str
    shape: tuple[int, ...]
    role: str  # weight, recurrent (weight), bias, gain (a norm's gamma), shift (a norm's beta)
    layer: int


@dataclass
class ForwardRecord:
    """What a forward pass keeps, filled layer by layer: matmul outputs z (the output layer's last),
    hidden activations h, batch norm's batch statistics {layer: (mean, variance)}, the tensors whose
    gradients are the logged signal (one per signal column, in the columns' order) and the hidden
    units whose inactive share is logged (one tensor per activity column). `moving` holds batch
    norm's moving statistics when the pass is the test set's; `real` marks a padded batch's real rows."""

    moving: dict | None = None
    real: Any = None
    zs: list = field(default_factory=list)
    hs: list = field(default_factory=list)
    batch_stats: dict = field(default_factory=dict)
    signals: list = field(default_factory=list)
    units: list = field(default_factory=list)


class Draws:
    """The random draws a layer's initial values take, with the run's seed and init:
    weight(tensor) by the config's init, orthogonal(tensor, gain) = gain x Keras's Orthogonal."""

    def weight(self, tensor: Tensor):
        raise NotImplementedError

    def orthogonal(self, tensor: Tensor, gain: float):
        raise NotImplementedError


class LayerKind:
    """The defaults every kind shares; a kind is a frozen dataclass that subclasses this.

    A kind has `index` (1 is next to the input), `fan_in`, `fan_out`, `activation` (None for the
    output layer) and `tag` (its tensors' suffix) and defines `tensors`, `forward` and `describe`.
    """

    # the net built around this kind when a config's `model` names it (None: a part of the MLP)
    model: ClassVar[str | None] = None
    time_steps: ClassVar[int | None] = None  # a recurrent kind reads the image row by row
    words: ClassVar[str] = ""  # what the kind is, in the --model option's help: "Keras's LSTM"

    index: int
    fan_in: int
    fan_out: int
    activation: str | None
    tag: str

    @property
    def suffix(self) -> str:
        return self.tag or str(self.index)

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        raise NotImplementedError

    @property
    def weight(self) -> str:
        """The input weight: the one whose gradient is set beside the other layers'."""
        return next(tensor.name for tensor in self.tensors if tensor.role == "weight")

    @property
    def bias(self) -> str | None:
        return next((tensor.name for tensor in self.tensors if tensor.role == "bias"), None)

    @property
    def state(self) -> tuple[Tensor, ...]:
        """Values kept for the test set that are not trained (batch norm's moving statistics)."""
        return ()

    @property
    def signals(self) -> tuple[str, ...]:
        """The columns of the back-propagated signal this layer logs, in its record's order."""
        return ()

    @property
    def signal_path(self) -> tuple[str, ...]:
        """The signal columns along the path back from the loss to the input, first to last: what
        a ratio of first to last reads (for an LSTM: dh_t, not the cell state's dc_t)."""
        return self.signals

    @property
    def signal_groups(self) -> tuple[tuple[str, str], ...]:
        """(column prefix, words) per signal a picture draws through time."""
        return ()

    @property
    def linear_growth(self) -> float | None:
        """The factor per step back through time that the initial recurrent weight alone gives the
        signal while the activations stay linear (a simple RNN's gain); None where no such
        estimate holds."""
        return None

    def initial(self, tensor: Tensor, draws: "Draws"):
        """The tensor's initial value (a tf.Tensor): input weights by the config's init, gains
        (gamma) one, biases and shifts zero."""
        import tensorflow as tf

        if tensor.role == "weight":
            return draws.weight(tensor)
        return tf.ones(tensor.shape) if tensor.role == "gain" else tf.zeros(tensor.shape)

    def forward(self, params: dict, h, record: ForwardRecord):
        """The layer's output for input h, adding what it logs to `record`."""
        raise NotImplementedError

    def describe(self) -> str:
        """The layer in a few words, for titles and reports."""
        raise NotImplementedError
