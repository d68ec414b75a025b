"""The net as one value: its layers, each with its tensors, their shapes and roles, from the config.

No TensorFlow here: the forward pass and initialisers (model.py), the column schema, the run
folder, the pictures and the tests all read the same value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

N_INPUTS = 784
N_CLASSES = 10
N_ROWS = 28  # the recurrent net reads an image as 28 time steps of 28 pixels
ROW_WIDTH = N_INPUTS // N_ROWS
RNN_HIDDEN = 128  # the recurrent net's width when none is given
NORM_EPSILON = 1e-3  # Keras's BatchNormalization and LayerNormalization
BATCH_NORM_MOMENTUM = 0.99


@dataclass(frozen=True)
class Tensor:
    """A trained tensor: its name (a column prefix in metrics.csv), shape, role and layer."""

    name: str
    shape: tuple[int, ...]
    role: str  # weight, recurrent (weight), bias, gain (a norm's gamma), shift (a norm's beta)
    layer: int


@dataclass(frozen=True)
class Layer:
    """Dense: z = h @ w (+ b); for a hidden layer then norm, activation and, where it fits, the
    residual path. Recurrent: h_t = act(x_t @ wx + h_(t-1) @ wh + bh) over the image's rows."""

    index: int  # 1 is next to the input
    fan_in: int
    fan_out: int
    activation: str | None  # None for the output layer
    norm: str = "none"  # none, batch, layer (dense hidden layers only)
    residual: bool = False  # h = act(norm(z)) + h_previous
    kind: str = "dense"  # dense, recurrent
    tag: str = ""  # the tensors' suffix: the index (w1, b1) unless given (wx, wh, bh; wo, bo)

    @property
    def suffix(self) -> str:
        return self.tag or str(self.index)

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        if self.kind == "recurrent":
            return (Tensor("wx", (self.fan_in, self.fan_out), "weight", self.index),
                    Tensor("wh", (self.fan_out, self.fan_out), "recurrent", self.index),
                    Tensor("bh", (self.fan_out,), "bias", self.index))
        weight = Tensor(self.weight, (self.fan_in, self.fan_out), "weight", self.index)
        if self.norm == "none":
            return (weight, Tensor(f"b{self.suffix}", (self.fan_out,), "bias", self.index))
        # a normalised layer's bias would be removed by the mean: beta takes its place
        return (weight, Tensor(f"gamma{self.suffix}", (self.fan_out,), "gain", self.index),
                Tensor(f"beta{self.suffix}", (self.fan_out,), "shift", self.index))

    @property
    def weight(self) -> str:
        """The input weight: the one whose gradient is set beside the other layers'."""
        return "wx" if self.kind == "recurrent" else f"w{self.suffix}"

    @property
    def bias(self) -> str | None:
        if self.kind == "recurrent":
            return "bh"
        return f"b{self.suffix}" if self.norm == "none" else None

    @property
    def state(self) -> tuple[Tensor, ...]:
        """What batch norm keeps for the test set: moving averages of the batch statistics."""
        if self.norm != "batch":
            return ()
        return (Tensor(f"moving_mean{self.index}", (self.fan_out,), "moving_mean", self.index),
                Tensor(f"moving_variance{self.index}", (self.fan_out,), "moving_variance", self.index))


@dataclass(frozen=True)
class Net:
    """The net a config describes, layer by layer: an MLP, or a recurrent layer then a dense one."""

    layers: tuple[Layer, ...]

    @classmethod
    def of(cls, config: Any) -> "Net":
        """From a Config, or a mapping such as a run's config.json (older runs lack norm, residual and model)."""
        get = config.get if isinstance(config, Mapping) else lambda key, default: getattr(config, key, default)
        hidden = tuple(get("hidden", (256, 128)))
        activation, norm, residual = get("activation", "relu"), get("norm", "none"), bool(get("residual", False))
        if get("model", "mlp") == "rnn":
            width = hidden[0] if hidden else RNN_HIDDEN
            return cls((Layer(1, ROW_WIDTH, width, activation, kind="recurrent"),
                        Layer(2, width, N_CLASSES, None, tag="o")))
        sizes = (N_INPUTS, *hidden, N_CLASSES)
        layers = []
        for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            if index <= len(hidden):
                layers.append(Layer(index, fan_in, fan_out, activation, norm, residual and fan_in == fan_out))
            else:
                layers.append(Layer(index, fan_in, fan_out, None))
        return cls(tuple(layers))

    @property
    def hidden_layers(self) -> tuple[Layer, ...]:
        return self.layers[:-1]

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        return tuple(tensor for layer in self.layers for tensor in layer.tensors)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(tensor.name for tensor in self.tensors)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {tensor.name: tensor.shape for tensor in self.tensors}

    @property
    def is_recurrent(self) -> bool:
        return self.layers[0].kind == "recurrent"

    @property
    def weights(self) -> tuple[str, ...]:
        """The matrices whose norms and movement are logged: w1 ... wL, or wx, wh, wo."""
        return tuple(tensor.name for tensor in self.tensors if tensor.role in ("weight", "recurrent"))

    @property
    def layer_weights(self) -> tuple[str, ...]:
        """Each layer's input weight, first to last: w1 ... wL, or wx, wo."""
        return tuple(layer.weight for layer in self.layers)

    @property
    def signals(self) -> tuple[str, ...]:
        """The back-propagated signal's columns: dL/dz_l per layer (delta1 ... deltaL), or for
        the recurrent net dL/dh_t per time step (dh1 ... dh28)."""
        if self.is_recurrent:
            return tuple(f"dh{t}" for t in range(1, N_ROWS + 1))
        return tuple(f"delta{layer.index}" for layer in self.layers)

    @property
    def activation(self) -> str:
        return self.layers[0].activation or "relu"

    @property
    def state(self) -> tuple[Tensor, ...]:
        return tuple(tensor for layer in self.layers for tensor in layer.state)

    @property
    def has_residual(self) -> bool:
        return any(layer.residual for layer in self.layers)

    def tensor(self, name: str) -> Tensor:
        return next(tensor for tensor in self.tensors if tensor.name == name)


RECURRENT_ROLES = {"wx": "weight", "wh": "recurrent", "bh": "bias", "wo": "weight", "bo": "bias"}


def role_of(name: str) -> str:
    """A tensor's role from its name, for readers that have only metrics.csv's columns."""
    if name in RECURRENT_ROLES:
        return RECURRENT_ROLES[name]
    for prefix, role in (("gamma", "gain"), ("beta", "shift"), ("w", "weight"), ("b", "bias")):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return role
    raise ValueError(f"not a tensor name: {name}")
