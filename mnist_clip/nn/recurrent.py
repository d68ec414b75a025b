"""The simple recurrent layer (Keras's SimpleRNN): h_t = act(x_t @ wx + h_(t-1) @ wh + bh) over
the image's rows, h_0 = 0; wh = gain x Keras's Orthogonal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mnist_clip.nn.layer import N_ROWS, Draws, ForwardRecord, LayerKind, Tensor

TIME_SIGNAL = ("dh", "dL/dh_t, the hidden state")


@dataclass(frozen=True)
class Recurrent(LayerKind):
    """What every recurrent kind shares: it reads the image's 28 rows, and its recurrent weight
    starts as gain x Keras's Orthogonal."""

    time_steps: ClassVar[int] = N_ROWS

    index: int
    fan_in: int  # a row's pixels
    fan_out: int  # the hidden width H
    activation: str = "tanh"
    tag: str = ""
    gain: float = 1.0  # every singular value of the recurrent weight at the start

    def initial(self, tensor: Tensor, draws: Draws):
        if tensor.role == "recurrent":
            return draws.orthogonal(tensor, self.gain)
        return super().initial(tensor, draws)

    def describe(self) -> str:
        return f"{self.activation}, gain {self.gain:g}"


@dataclass(frozen=True)
class SimpleRecurrent(Recurrent):
    model: ClassVar[str] = "rnn"
    words: ClassVar[str] = "Keras's SimpleRNN"

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        return (Tensor("wx", (self.fan_in, self.fan_out), "weight", self.index),
                Tensor("wh", (self.fan_out, self.fan_out), "recurrent", self.index),
                Tensor("bh", (self.fan_out,), "bias", self.index))

    @property
    def signals(self) -> tuple[str, ...]:
        """dL/dh_t per time step, dh1 ... dh28."""
        return tuple(f"dh{t}" for t in range(1, self.time_steps + 1))

    @property
    def signal_groups(self) -> tuple[tuple[str, str], ...]:
        return (TIME_SIGNAL,)

    @property
    def linear_growth(self) -> float:
        """dL/dh_(t-1) = wh^T diag(act'(.)) dL/dh_t, and act' is 1 near 0: the gain per step back."""
        return self.gain

    def forward(self, params: dict, x, record: ForwardRecord):
        """The loop over time is unrolled: 28 static steps that XLA compiles with the rest of the
        training step."""
        from mnist_clip.nn import ops

        act = ops.ACTIVATION_FUNCTIONS[self.activation]
        rows = ops.image_rows(x, self.time_steps, self.fan_in)
        inputs = ops.tf.einsum("btr,rh->bth", rows, params["wx"])  # every row's x_t @ wx in one matmul
        h = act(inputs[:, 0] + params["bh"])  # h_0 = 0 adds nothing
        hs = [h]
        for t in range(1, self.time_steps):
            h = act(inputs[:, t] + h @ params["wh"] + params["bh"])
            hs.append(h)
        record.hs.extend(hs)
        record.signals.extend(hs)
        # a unit is inactive when it is for every example at every time step
        record.units.append(ops.tf.concat(hs, axis=0))
        return h
