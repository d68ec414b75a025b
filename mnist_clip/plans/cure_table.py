"""The cures for a diverging or vanishing run, as one table of named overrides of the config.

Data, not code: each cure is the config keys it sets. Applying one to a setup either gives the
setup's config with those keys changed, or says why it is skipped: it would not change the
setup, it applies only to setups of another kind, or the setup's config refuses it (its own
validation decides, so that a net with no equal widths refuses `residual`, and so on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from mnist_clip.config import Config
from mnist_clip.errors import InputError, name as named


@dataclass(frozen=True)
class Divided:
    """A value relative to the setup's own: the setup's value divided by `by`."""

    by: float

    def __str__(self) -> str:
        return f"/ {self.by:g}"


@dataclass(frozen=True)
class Cure:
    """A named set of config values; `only_if` holds the setup's values it is meant for."""

    name: str
    changes: Mapping[str, Any]
    words: str
    only_if: Mapping[str, Any] = field(default_factory=dict)


# The material's cures: lower the learning rate, add normalisation, clip the gradients, clean
# dirty data, check the network's design (inputs, initialisation, activation, residual paths,
# optimizer). `base` is the setup itself, the reference every cure is paired with.
CURES = (
    Cure("base", {}, "the setup as given"),
    Cure("lower_lr", {"lr": Divided(10)}, "the learning rate divided by 10"),
    Cure("scaled_inputs", {"input_scale": 255.0}, "pixels divided by 255: inputs in 0..1"),
    Cure("clipping", {"clip": "global_norm", "clip_norm": 15.0}, "tf.clip_by_global_norm at 15, the tutorial's "
         "(skipped for a setup that clips already: its base has its own method)", {"clip": "none"}),
    Cure("batchnorm", {"norm": "batch"}, "batch normalisation in every hidden layer"),
    Cure("layernorm", {"norm": "layer"}, "layer normalisation in every hidden layer"),
    Cure("residual", {"residual": True}, "residual connections where a layer's input and output widths are equal"),
    Cure("glorot", {"init": "glorot"}, "Glorot (Xavier) normal initialisation"),
    Cure("he_relu", {"init": "he", "activation": "relu"}, "He normal initialisation with ReLU"),
    Cure("adam", {"optimizer": "adam", "lr": 0.001}, "Adam at its customary learning rate (Keras's default, 0.001), "
         "replacing the setup's optimizer and learning rate"),
    Cure("clean_data", {"dirty_fraction": 0.0}, "the training set without its dirty examples"),
)
CURE_NAMES = tuple(cure.name for cure in CURES)
BY_NAME = {cure.name: cure for cure in CURES}


def shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def changes_text(cure: Cure) -> str:
    """'lr / 10', 'clip global_norm, clip_norm 15': what the cure sets, in config keys ('' for base)."""
    return ", ".join(f"{key} {shown(value)}" for key, value in cure.changes.items())


def resolved_changes(cure: Cure, base: Config) -> dict[str, Any]:
    """The cure's values for this setup (a Divided value divides the setup's own)."""
    return {key: getattr(base, key) / value.by if isinstance(value, Divided) else value
            for key, value in cure.changes.items()}


def apply_cure(cure: Cure, base: Config) -> Config | str:
    """The setup with the cure applied, or why it is skipped (one line)."""
    differs = {key: getattr(base, key) for key, value in cure.only_if.items() if getattr(base, key) != value}
    if differs:
        meant = ", ".join(f"{key} {shown(value)}" for key, value in cure.only_if.items())
        has = ", ".join(f"{key} {shown(value)}" for key, value in differs.items())
        return f"it is for a setup with {meant}; this one has {has}"
    changes = resolved_changes(cure, base)
    try:
        cured = base.replace(**changes)
    except InputError as err:
        return f"the setup's config refuses it: {err.template}"
    if cured == base and cure.changes:
        return "it would not change the setup: " + ", ".join(f"{key} is {shown(getattr(base, key))} already"
                                                             for key in changes)
    return cured


def check_cure_names(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The cures asked for, in the table's order, base always first; an unknown name is an error."""
    for given in names:
        if given not in BY_NAME:
            from mnist_clip.config import nearest_key

            close = nearest_key(given, CURE_NAMES)
            hint = f"did you mean '{close}'? " if close else ""
            raise InputError(f"{named('cure')}: unknown cure '{given}'; {hint}known: {', '.join(CURE_NAMES)}", "cure")
    wanted = set(names)
    return tuple(name for name in CURE_NAMES if name == "base" or not wanted or name in wanted)
