"""TensorBoard event files for a run: every logged scalar per step, gradient histograms per epoch."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from mnist_clip.nn.model import LOSS_FUNCTIONS, forward
from mnist_clip.runs.schema import is_flag_column

TENSORBOARD_DIR = "tensorboard"


def scalar_tag(column: str) -> str:
    """metrics.csv column -> TensorBoard tag, grouped so that related curves share a section."""
    for when in ("before", "after"):
        if column.endswith(f"_{when}"):
            name = column[: -len(when) - 1]
            return f"global_norm/{when}" if name == "global_norm" else f"grad_norm_{when}/{name}"
    if column.endswith("_update"):
        return f"update/{column[: -len('_update')]}"
    if column.startswith("delta") or (column.startswith("dh") and column[2:].isdigit()):
        return f"signal/{column}"
    if column.startswith("dead_"):
        return f"dead_relu/{column[5:]}"
    if column.startswith("saturated_"):
        return f"saturated/{column[10:]}"
    return f"train/{column}"


class TensorBoardLog:
    """Writes <run>/tensorboard/ as training goes: the step scalars of each chunk,
    the epoch's test metrics, and histograms of the gradients (before clipping)
    and of the weights at the end of every epoch."""

    def __init__(self, run_dir: Path, step_columns: tuple[str, ...], net="relu", loss_name: str = "mse"):
        self.writer = tf.summary.create_file_writer(str(Path(run_dir) / TENSORBOARD_DIR))
        self.net = net
        self.loss_name = loss_name
        from tensorboard.plugins.scalar import metadata

        scalar_columns = [c for c in step_columns if c == "clipped" or not is_flag_column(c)]
        columns = [step_columns.index(c) for c in scalar_columns]
        scalar_tags = [scalar_tag(c) for c in scalar_columns]
        scalar_metadata = metadata.create_summary_metadata(display_name=None, description=None)

        # One graph loops over the chunk's steps. tf.summary.scalar would prefix
        # its tags with the loop's name scope ("while/"); tf.summary.write with
        # the scalar plugin's metadata keeps them as given.
        # A tf.while_loop written out: without autograph, tracing writes no converted
        # source files into the temp folder.
        @tf.function(autograph=False)
        def write_steps(values, first_step):
            picked = tf.gather(values, columns, axis=1)

            def write_step(i):
                step = first_step + tf.cast(i, tf.int64)
                written = [tf.summary.write(tag=tag, tensor=picked[i, j], step=step, metadata=scalar_metadata)
                           for j, tag in enumerate(scalar_tags)]
                with tf.control_dependencies(written):
                    return i + 1

            tf.while_loop(lambda i: i < tf.shape(picked)[0], write_step, [tf.constant(0)])

        self._write_steps = write_steps

    def write_epoch(self, result, trainer) -> None:
        last_step = result.first_step + len(result.values) - 1
        with self.writer.as_default():
            self._write_steps(tf.constant(result.values), tf.constant(result.first_step, tf.int64))
            tf.summary.scalar("test/loss", result.test_loss, step=last_step)
            tf.summary.scalar("test/accuracy", result.test_accuracy, step=last_step)
            xb, yb = trainer.epoch_batches(result.epoch)[0]
            for name, gradient in zip(trainer.params, gradients(trainer.params, xb[0], yb[0], self.net, self.loss_name)):
                tf.summary.histogram(f"gradient/{name}", gradient, step=last_step)
            for name, weight in trainer.params.items():
                tf.summary.histogram(f"weight/{name}", weight, step=last_step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def gradients(params: dict, x: tf.Tensor, y: tf.Tensor, net="relu", loss_name: str = "mse") -> list[tf.Tensor]:
    """The raw gradients on one batch with the current parameters (for the histograms); `net`
    is the Net, or an activation name for a plain MLP."""
    variables = list(params.values())
    with tf.GradientTape() as tape:
        loss = LOSS_FUNCTIONS[loss_name](y, forward(params, x, net).out)
    return tape.gradient(loss, variables)
