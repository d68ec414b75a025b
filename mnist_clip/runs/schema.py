"""The columns of metrics.csv and epochs.csv: what the compiled step returns and the run folder holds.

No TensorFlow here: the training loop, the run folder's writer and its readers all use it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mnist_clip.nn import Net, role_of
from mnist_clip.training.methods import METHODS

REFERENCE_NET = Net.of({})


def activity_column_prefix(activation: str) -> str:
    """ReLU units die (output 0 for the whole batch); sigmoid and tanh units saturate."""
    return "dead" if activation == "relu" else "saturated"


def weight_tensors(tensors: Sequence[str]) -> tuple[str, ...]:
    """The weight matrices among a net's tensors (w1 ... wL, or wx wh wo)."""
    return tuple(name for name in tensors if role_of(name) in ("weight", "recurrent"))


def step_value_columns(net: Net = REFERENCE_NET, clip: str = "global_norm") -> tuple[str, ...]:
    """metrics.csv's value columns for a net (tensors w1 b1 ... wL bL, or wx wh bh wo bo).

    For the reference net they are exactly the reference's logging (loss to
    b3_after), then which tensors clipping acted on, the back-propagated signal
    per layer (the recurrent net's: per time step) and the share of inactive units
    per hidden layer. Some clipping methods add the quantity their threshold is
    compared with. Last, the L2 norm of the step each tensor took,
    ||theta_after - theta_before||, and each weight's L2 norm when the step began
    (their ratio is the update-to-weight ratio).
    """
    return (*gradient_columns(net, clip), *update_columns(net.names))


def gradient_columns(net: Net, clip: str) -> tuple[str, ...]:
    """The columns known before the update: everything but the steps taken."""
    tensors = net.names
    activity = activity_column_prefix(net.activation)
    return (
        "loss",
        "accuracy",
        "global_norm_before",
        "global_norm_after",
        "clipped",
        *(f"{name}_{when}" for name in tensors for when in ("before", "after")),
        *(f"{name}_clipped" for name in tensors),
        *net.signal_columns,
        *(f"{activity}_h{layer.index}" for layer in net.hidden_layers),
        *clip_columns(tensors, clip),
    )


def update_columns(tensors: Sequence[str]) -> tuple[str, ...]:
    """Known once the step is applied: each tensor's step, then each weight's norm."""
    return (*(f"{name}_update" for name in tensors), *(f"{name}_norm" for name in weight_tensors(tensors)))


def clip_columns(tensors: Sequence[str], clip: str) -> tuple[str, ...]:
    """The columns the clipping method adds to every step (training.methods declares them)."""
    method = METHODS.get(clip)
    return method.extra_columns(tensors) if method else ()


STEP_VALUE_COLUMNS = step_value_columns()  # the reference net's
METRIC_COLUMNS = ("step", "epoch", *STEP_VALUE_COLUMNS)
BASE_METRIC_COLUMNS = METRIC_COLUMNS[:7]  # every run has these first
EPOCH_COLUMNS = ("epoch", "steps", "train_loss", "test_loss", "test_accuracy", "clipped_steps", "seconds")


def config_tensors(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The tensors of the net a config (a Config's to_dict() or a run's config.json) describes."""
    return Net.of(config).names


DIRTY_COLUMN = "dirty_in_batch"


def data_columns(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Last, in runs with dirty data only (the others keep their columns): how many dirty
    examples the step's batch held."""
    return (DIRTY_COLUMN,) if config.get("dirty_fraction", 0) else ()


def metric_columns_for(config: Mapping[str, Any]) -> tuple[str, ...]:
    """metrics.csv's header for a config."""
    return ("step", "epoch", *step_value_columns(Net.of(config), config.get("clip", "global_norm")),
            *data_columns(config))


def epoch_columns_for(config: Mapping[str, Any]) -> tuple[str, ...]:
    """epochs.csv's header: the fixed columns, then each weight's distance from its start."""
    return (*EPOCH_COLUMNS, *(f"{name}_moved" for name in weight_tensors(config_tensors(config))))


def earlier_headers(config: Mapping[str, Any], header: tuple[str, ...]) -> tuple[str, ...]:
    """A header as runs written before the update and moved columns had it: those columns
    were added at the end, so an earlier run's header is the current one without them."""
    added = set(update_columns(config_tensors(config))) | {c for c in header if c.endswith("_moved")}
    return tuple(c for c in header if c not in added)


def is_flag_column(column: str) -> bool:
    return column == "clipped" or (column.endswith("_clipped") and not column.endswith("_units_clipped"))
