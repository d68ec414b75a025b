"""The net as one value: its layers, each with its tensors, their shapes and roles, from the config.

No TensorFlow here: the forward pass and initialisers (model.py), the column schema, the run
folder, the pictures and the tests all read the same value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

N_INPUTS = 784
N_CLASSES = 10
NORM_EPSILON = 1e-3  # Keras's BatchNormalization and LayerNormalization
BATCH_NORM_MOMENTUM = 0.99


@dataclass(frozen=True)
class Tensor:
    """A trained tensor: its name (a column prefix in metrics.csv), shape, role and layer."""

    name: str
    shape: tuple[int, ...]
    role: str  # weight, bias, gain (a norm's gamma), shift (a norm's beta)
    layer: int


@dataclass(frozen=True)
class Layer:
    """z = h @ w (+ b); for a hidden layer then norm, activation and, where it fits, the residual path."""

    index: int  # 1 is next to the input
    fan_in: int
    fan_out: int
    activation: str | None  # None for the output layer
    norm: str = "none"  # none, batch, layer (hidden layers only)
    residual: bool = False  # h = act(norm(z)) + h_previous

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        weight = Tensor(f"w{self.index}", (self.fan_in, self.fan_out), "weight", self.index)
        if self.norm == "none":
            return (weight, Tensor(f"b{self.index}", (self.fan_out,), "bias", self.index))
        # a normalised layer's bias would be removed by the mean: beta takes its place
        return (weight, Tensor(f"gamma{self.index}", (self.fan_out,), "gain", self.index),
                Tensor(f"beta{self.index}", (self.fan_out,), "shift", self.index))

    @property
    def weight(self) -> str:
        return f"w{self.index}"

    @property
    def bias(self) -> str | None:
        return f"b{self.index}" if self.norm == "none" else None

    @property
    def state(self) -> tuple[Tensor, ...]:
        """What batch norm keeps for the test set: moving averages of the batch statistics."""
        if self.norm != "batch":
            return ()
        return (Tensor(f"moving_mean{self.index}", (self.fan_out,), "moving_mean", self.index),
                Tensor(f"moving_variance{self.index}", (self.fan_out,), "moving_variance", self.index))


@dataclass(frozen=True)
class Net:
    """The MLP a config describes, layer by layer."""

    layers: tuple[Layer, ...]

    @classmethod
    def of(cls, config: Any) -> "Net":
        """From a Config, or a mapping such as a run's config.json (older runs lack norm and residual)."""
        get = config.get if isinstance(config, Mapping) else lambda key, default: getattr(config, key, default)
        hidden = tuple(get("hidden", (256, 128)))
        activation, norm, residual = get("activation", "relu"), get("norm", "none"), bool(get("residual", False))
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
    def weights(self) -> tuple[str, ...]:
        return tuple(layer.weight for layer in self.layers)

    @property
    def state(self) -> tuple[Tensor, ...]:
        return tuple(tensor for layer in self.layers for tensor in layer.state)

    @property
    def has_residual(self) -> bool:
        return any(layer.residual for layer in self.layers)

    def tensor(self, name: str) -> Tensor:
        return next(tensor for tensor in self.tensors if tensor.name == name)


def role_of(name: str) -> str:
    """A tensor's role from its name, for readers that have only metrics.csv's columns."""
    for prefix, role in (("gamma", "gain"), ("beta", "shift"), ("w", "weight"), ("b", "bias")):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return role
    raise ValueError(f"not a tensor name: {name}")
