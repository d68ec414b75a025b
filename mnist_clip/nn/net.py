"""The net as one value: its layers, each a layer kind with its tensors, their shapes and roles,
built from the config. No TensorFlow here: the forward pass and initialisers (nn.model), the
column schema, the run folder, the pictures and the tests all read the same value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from mnist_clip.nn.dense import Dense
from mnist_clip.nn.layer import N_CLASSES, N_INPUTS, ROW_WIDTH, LayerKind, Tensor
from mnist_clip.nn.lstm import LSTM
from mnist_clip.nn.recurrent import SimpleRecurrent

# The recurrent kinds a config's `model` can name: each reads the image row by row, then a dense
# output layer reads its last state. A new one is its module and its entry here.
RECURRENT_KINDS: dict[str, type[LayerKind]] = {kind.model: kind for kind in (SimpleRecurrent, LSTM)}
MODELS = ("mlp", *RECURRENT_KINDS)
REFERENCE_HIDDEN = (256, 128)  # the tutorial's net: 784-256-128-10
RECURRENT_HIDDEN = 128  # a recurrent net's width when none is given
# Each model's defaults for the keys a user does not give: the tutorial's net, and for a
# recurrent net one width of 128 with tanh, the natural activation of a recurrence
MODEL_DEFAULTS = {"mlp": {"hidden": REFERENCE_HIDDEN, "activation": "relu"},
                  **{model: {"hidden": (RECURRENT_HIDDEN,), "activation": "tanh"} for model in RECURRENT_KINDS}}


@dataclass(frozen=True)
class Net:
    """The net a config describes, layer by layer: an MLP, or a recurrent layer then a dense one."""

    layers: tuple[LayerKind, ...]

    @classmethod
    def of(cls, config: Any) -> "Net":
        """From a Config, or a mapping such as a run's config.json (older runs lack norm, residual and model)."""
        get = config.get if isinstance(config, Mapping) else lambda key, default: getattr(config, key, default)
        hidden = tuple(get("hidden", REFERENCE_HIDDEN))
        activation, norm, residual = get("activation", "relu"), get("norm", "none"), bool(get("residual", False))
        kind = RECURRENT_KINDS.get(get("model", "mlp"))
        if kind is not None:
            width = hidden[0] if hidden else RECURRENT_HIDDEN
            gain = float(get("recurrent_gain", 1.0))
            return cls((kind(1, ROW_WIDTH, width, activation, gain=gain),
                        Dense(2, width, N_CLASSES, None, tag="o", logs_signal=False)))
        sizes = (N_INPUTS, *hidden, N_CLASSES)
        layers = []
        for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            if index <= len(hidden):
                layers.append(Dense(index, fan_in, fan_out, activation, norm, residual and fan_in == fan_out))
            else:
                layers.append(Dense(index, fan_in, fan_out, None))
        return cls(tuple(layers))

    @property
    def hidden_layers(self) -> tuple[LayerKind, ...]:
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
    def time_steps(self) -> int | None:
        """The time steps a recurrent net reads the image in; None for an MLP."""
        return self.layers[0].time_steps

    @property
    def is_recurrent(self) -> bool:
        return self.time_steps is not None

    @property
    def weights(self) -> tuple[str, ...]:
        """The matrices whose norms and movement are logged: w1 ... wL, or wx, wh, wo."""
        return tuple(tensor.name for tensor in self.tensors if tensor.role in ("weight", "recurrent"))

    @property
    def layer_weights(self) -> tuple[str, ...]:
        """Each layer's input weight, first to last: w1 ... wL, or wx, wo."""
        return tuple(layer.weight for layer in self.layers)

    @property
    def signal_columns(self) -> tuple[str, ...]:
        """Every column of the back-propagated signal, layer by layer: dL/dz_l per layer
        (delta1 ... deltaL), or for a recurrent net dL/dh_t per time step (dh1 ... dh28), and
        for an LSTM also dL/dc_t (dc1 ... dc28)."""
        return tuple(column for layer in self.layers for column in layer.signals)

    @property
    def signals(self) -> tuple[str, ...]:
        """The signal along the path back from the loss to the input, first to last: delta1 ...
        deltaL, or dh1 ... dh28."""
        return tuple(column for layer in self.layers for column in layer.signal_path)

    @property
    def signal_groups(self) -> tuple[tuple[str, str], ...]:
        """(column prefix, words) of each signal drawn through time: dh, and an LSTM's dc."""
        return tuple(group for layer in self.layers for group in layer.signal_groups)

    @property
    def activation(self) -> str:
        return self.layers[0].activation or "relu"

    @property
    def state(self) -> tuple[Tensor, ...]:
        return tuple(tensor for layer in self.layers for tensor in layer.state)

    @property
    def has_residual(self) -> bool:
        return any(getattr(layer, "residual", False) for layer in self.layers)

    @property
    def recurrent_gain(self) -> float | None:
        return getattr(self.layers[0], "gain", None)

    @property
    def linear_growth(self) -> float | None:
        """The signal's linear-regime growth per step back through time, where the net's kind
        states one (see LayerKind.linear_growth)."""
        return next((layer.linear_growth for layer in self.layers if layer.linear_growth is not None), None)

    def tensor(self, name: str) -> Tensor:
        return next(tensor for tensor in self.tensors if tensor.name == name)

    def describe(self) -> str:
        """'784-256-128-10 relu' (with a norm or residual path named), 'rnn 28x28-128-10 tanh, gain 1'."""
        first, last = self.layers[0], self.layers[-1]
        if self.is_recurrent:
            return f"{first.model} {self.time_steps}x{first.fan_in}-{first.fan_out}-{last.fan_out} {first.describe()}"
        if len(self.layers) == 1:
            return f"{first.fan_in}-{first.fan_out} (linear)"
        sizes = "-".join(str(size) for size in (first.fan_in, *(layer.fan_out for layer in self.layers)))
        # the hidden layers share activation and norm; some have the residual path
        words = first.describe().split(" ", 1)[1].replace(", residual", "")
        return f"{sizes} {words}" + (", residual" if self.has_residual else "")


ROLES_BY_NAME = {tensor.name: tensor.role for net in (Net.of({"model": model}) for model in RECURRENT_KINDS)
                 for tensor in net.tensors}


def role_of(name: str) -> str:
    """A tensor's role from its name, for readers that have only metrics.csv's columns."""
    if name in ROLES_BY_NAME:
        return ROLES_BY_NAME[name]
    for prefix, role in (("gamma", "gain"), ("beta", "shift"), ("w", "weight"), ("b", "bias")):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return role
    raise ValueError(f"not a tensor name: {name}")
