"""The LSTM layer, exactly Keras 3's keras.layers.LSTM: gates i, f, c, o in that order along the
4H axis; i, f, o = sigmoid, g = tanh(z_c); c_t = f c_(t-1) + i g; h_t = o tanh(c_t); h_0 = c_0 = 0.
wh = gain x Keras's Orthogonal [H, 4H]; bh zero but the forget gate's 1 (unit_forget_bias).
Through c_t the signal passes back multiplied by the forget gate alone (Hochreiter & Schmidhuber
1997): it logs dL/dc_t beside dL/dh_t."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mnist_clip.nn.layer import Draws, ForwardRecord, Tensor
from mnist_clip.nn.recurrent import TIME_SIGNAL, Recurrent

GATES = 4  # input, forget, cell candidate, output: Keras's order along the 4H axis
FORGET_GATE = 1


@dataclass(frozen=True)
class LSTM(Recurrent):
    """activation is Keras's `activation`: the candidate's and the cell output's."""

    model: ClassVar[str] = "lstm"
    words: ClassVar[str] = "Keras's LSTM"

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        width = GATES * self.fan_out
        return (Tensor("wx", (self.fan_in, width), "weight", self.index),
                Tensor("wh", (self.fan_out, width), "recurrent", self.index),
                Tensor("bh", (width,), "bias", self.index))

    @property
    def signals(self) -> tuple[str, ...]:
        """dL/dh_t, then dL/dc_t, per time step: dh1 ... dh28, dc1 ... dc28."""
        steps = range(1, self.time_steps + 1)
        return (*(f"dh{t}" for t in steps), *(f"dc{t}" for t in steps))

    @property
    def signal_path(self) -> tuple[str, ...]:
        return self.signals[: self.time_steps]

    @property
    def signal_groups(self) -> tuple[tuple[str, str], ...]:
        return (TIME_SIGNAL, ("dc", "dL/dc_t, the cell state"))

    def initial(self, tensor: Tensor, draws: Draws):
        import tensorflow as tf

        if tensor.role == "bias":
            gate = tf.range(tensor.shape[0]) // self.fan_out
            return tf.cast(tf.equal(gate, FORGET_GATE), tf.float32)
        return super().initial(tensor, draws)

    def forward(self, params: dict, x, record: ForwardRecord):
        """Unrolled over the 28 rows, as the simple recurrent layer."""
        from mnist_clip.nn import ops

        tf = ops.tf
        act = ops.ACTIVATION_FUNCTIONS[self.activation]
        width = self.fan_out
        rows = ops.image_rows(x, self.time_steps, self.fan_in)
        inputs = tf.einsum("btr,rg->btg", rows, params["wx"])  # every row's x_t @ wx in one matmul
        h = c = None
        hs, cs, cell_outputs = [], [], []
        for t in range(self.time_steps):
            # Keras's order: x_t @ wx, + h_(t-1) @ wh (nothing at t = 1), + bh
            z = (inputs[:, t] if h is None else inputs[:, t] + h @ params["wh"]) + params["bh"]
            # one sigmoid over all four gates, then slices: half the compile time of a split into four
            gates = tf.sigmoid(z)
            i, f, o = gates[:, :width], gates[:, width:2 * width], gates[:, 3 * width:]
            g = act(z[:, 2 * width:3 * width])
            c = i * g if c is None else f * c + i * g
            cell_output = act(c)
            h = o * cell_output
            hs.append(h)
            cs.append(c)
            cell_outputs.append(cell_output)
        record.hs.extend(hs)
        record.signals.extend(hs + cs)
        # a unit is inactive when act(c_t) passes no gradient for every example at every time step
        record.units.append(tf.concat(cell_outputs, axis=0))
        return h
