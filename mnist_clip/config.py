"""Every parameter of an experiment: the frozen Config, TOML loading and validation."""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from mnist_clip.errors import InputError

PARAM_NAMES = ("w1", "b1", "w2", "b2", "w3", "b3")
CLIP_METHODS = ("global_norm", "norm", "value", "average_norm", "none")
DATASETS = ("auto", "mnist", "mnist-5k")
ON_NONFINITE = ("stop", "continue")


@dataclass(frozen=True)
class Config:
    """One experiment. The defaults are the tutorial's reference experiment (configs/blog.toml)."""

    clip: str = "global_norm"
    clip_norm: float = 15.0
    lr: float = 0.01
    epochs: int = 30
    batch_size: int = 128
    input_scale: float = 50.0
    seed: int = 1234
    dataset: str = "auto"
    data_path: str | None = None
    shuffle: bool = False
    train: tuple[str, ...] = ()
    freeze: tuple[str, ...] = ()
    on_nonfinite: str = "stop"

    def __post_init__(self) -> None:
        _check_choice("clip", self.clip, CLIP_METHODS)
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("on_nonfinite", self.on_nonfinite, ON_NONFINITE)
        if self.clip != "none" and not self.clip_norm > 0:
            raise InputError(
                f"clip_norm must be > 0 for clip={self.clip} (got {self.clip_norm}); "
                "use clip=none to train without clipping"
            )
        if not self.lr > 0:
            raise InputError(f"lr must be > 0 (got {self.lr})")
        if not self.input_scale > 0:
            raise InputError(f"input_scale must be > 0 (got {self.input_scale})")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be an integer >= 1 (got {getattr(self, name)})")
        if self.seed < 0:
            raise InputError(f"seed must be an integer >= 0 (got {self.seed})")
        for name in ("train", "freeze"):
            for tensor in getattr(self, name):
                if tensor not in PARAM_NAMES:
                    raise InputError(
                        f"{name}: unknown tensor '{tensor}'; allowed: {', '.join(PARAM_NAMES)}"
                    )
        if self.train and self.freeze:
            raise InputError("give either train or freeze, not both (freeze is the complement of train)")
        if set(self.freeze) == set(PARAM_NAMES):
            raise InputError("freeze names every tensor: at least one must be trained")

    @property
    def trainable(self) -> tuple[str, ...]:
        """The tensors that SGD updates, in parameter order."""
        if self.train:
            return tuple(name for name in PARAM_NAMES if name in self.train)
        return tuple(name for name in PARAM_NAMES if name not in self.freeze)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["train"] = list(self.train)
        values["freeze"] = list(self.freeze)
        return values


CONFIG_KEYS = tuple(f.name for f in fields(Config))
_FIELD_TYPES = {f.name: f.type for f in fields(Config)}


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"{name}: unknown value '{value}'; allowed: {', '.join(allowed)}")


def normalize_key(key: str) -> str:
    """Config keys are the CLI option names; both `clip-norm` and `clip_norm` work."""
    return key.strip().replace("-", "_")


def unknown_key_message(key: str, where: str) -> str:
    close = difflib.get_close_matches(normalize_key(key), CONFIG_KEYS, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{where}: unknown config key '{key}'; {hint}valid keys: {', '.join(CONFIG_KEYS)}"


def coerce_value(key: str, value: Any, where: str) -> Any:
    """Check one value's type against the Config field; return it in the field's type."""
    kind = _FIELD_TYPES[key]
    bad = f"{where}: {key} must be {{}} (got {type(value).__name__} {value!r})"
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(bad.format("an integer"))
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(bad.format("a number"))
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise InputError(bad.format("true or false"))
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise InputError(bad.format("a string"))
        return value
    if kind == "str | None":
        if not isinstance(value, str):
            raise InputError(bad.format("a path string"))
        return value or None
    # tuple[str, ...]: a list of tensor names or one comma-separated string
    if isinstance(value, str):
        return parse_tensor_list(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    raise InputError(bad.format("a list of tensor names such as [\"w3\", \"b3\"]"))


def parse_tensor_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def values_from_mapping(mapping: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate keys and types of a {key: value} mapping; return Config field values."""
    values: dict[str, Any] = {}
    for key, value in mapping.items():
        name = normalize_key(key)
        if name not in CONFIG_KEYS:
            raise InputError(unknown_key_message(key, where))
        values[name] = coerce_value(name, value, where)
    return values


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a config file into validated Config field values (only the keys it sets)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read config file {path}: {err}") from None
    try:
        mapping = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"malformed TOML in {path}: {err}") from None
    return values_from_mapping(mapping, str(path))


def resolve(file_values: Mapping[str, Any], cli_values: Mapping[str, Any]) -> Config:
    """Precedence: command line, then config file, then the defaults."""
    merged = {**file_values, **cli_values}
    return Config(**merged)
