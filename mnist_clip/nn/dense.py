"""The dense layer: z = h @ w (+ b); for a hidden layer then batch or layer norm, the activation
and, where it fits, the residual path (Keras's Dense, BatchNormalization, LayerNormalization)."""

from __future__ import annotations

from dataclasses import dataclass

from mnist_clip.nn.layer import ForwardRecord, LayerKind, Tensor

NORMS = ("none", "batch", "layer")


@dataclass(frozen=True)
class Dense(LayerKind):
    index: int  # 1 is next to the input
    fan_in: int
    fan_out: int
    activation: str | None  # None for the output layer
    norm: str = "none"  # none, batch, layer (hidden layers only)
    residual: bool = False  # h = act(norm(z)) + h_previous
    tag: str = ""  # the tensors' suffix: the index (w1, b1) unless given (wo, bo)
    logs_signal: bool = True  # a recurrent net's output layer logs no signal of its own

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        weight = Tensor(f"w{self.suffix}", (self.fan_in, self.fan_out), "weight", self.index)
        if self.norm == "none":
            return (weight, Tensor(f"b{self.suffix}", (self.fan_out,), "bias", self.index))
        # a normalised layer's bias would be removed by the mean: beta takes its place
        return (weight, Tensor(f"gamma{self.suffix}", (self.fan_out,), "gain", self.index),
                Tensor(f"beta{self.suffix}", (self.fan_out,), "shift", self.index))

    @property
    def state(self) -> tuple[Tensor, ...]:
        """What batch norm keeps for the test set: moving averages of the batch statistics."""
        if self.norm != "batch":
            return ()
        return (Tensor(f"moving_mean{self.suffix}", (self.fan_out,), "moving_mean", self.index),
                Tensor(f"moving_variance{self.suffix}", (self.fan_out,), "moving_variance", self.index))

    @property
    def signals(self) -> tuple[str, ...]:
        """dL/dz of this layer (z before the norm)."""
        return (f"delta{self.index}",) if self.logs_signal else ()

    def forward(self, params: dict, h, record: ForwardRecord):
        from mnist_clip.nn import ops

        z = h @ params[self.weight]
        if self.norm == "none":
            z = z + params[self.bias]
        record.zs.append(z)
        if self.logs_signal:
            record.signals.append(z)
        if self.activation is None:
            return z
        u = z
        if self.norm == "batch":
            if record.moving is None:
                mean, variance = ops.batch_moments(z, record.real)
                record.batch_stats[self.index] = (mean, variance)
            else:
                mean = record.moving[f"moving_mean{self.suffix}"]
                variance = record.moving[f"moving_variance{self.suffix}"]
            u = ops.normalize(z, params[f"gamma{self.suffix}"], params[f"beta{self.suffix}"], mean, variance)
        elif self.norm == "layer":
            mean, variance = ops.tf.nn.moments(z, axes=[1], keepdims=True)
            u = ops.normalize(z, params[f"gamma{self.suffix}"], params[f"beta{self.suffix}"], mean, variance)
        a = ops.ACTIVATION_FUNCTIONS[self.activation](u)
        record.hs.append(a)
        record.units.append(a)
        return a + h if self.residual else a

    def describe(self) -> str:
        """'256 relu, batch norm, residual'; the output layer: '10'."""
        if self.activation is None:
            return str(self.fan_out)
        norm = {"batch": ", batch norm", "layer": ", layer norm"}.get(self.norm, "")
        return f"{self.fan_out} {self.activation}{norm}" + (", residual" if self.residual else "")
