"""Every parameter of an experiment: the frozen Config, TOML loading and validation."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mnist_clip.errors import InputError, name as named
from mnist_clip.net import N_CLASSES, N_INPUTS, RNN_HIDDEN, Net  # noqa: F401  (N_CLASSES: re-exported)

CLIP_METHODS = ("global_norm", "norm", "value", "average_norm", "agc", "autoclip", "none")
ADAPTIVE_CLIP_METHODS = ("agc", "autoclip")  # their threshold is not a fixed number
DATASETS = ("auto", "mnist", "mnist-5k")
ON_NONFINITE = ("stop", "continue")
ACTIVATIONS = ("relu", "sigmoid", "tanh")
INITS = ("reference", "glorot", "he")
NORMS = ("none", "batch", "layer")
OPTIMIZERS = ("sgd", "adam", "rmsprop")
LOSSES = ("mse", "crossentropy")
REFERENCE_HIDDEN = (256, 128)
MODELS = ("mlp", "rnn")
# Every field with a fixed set of values: Config checks them, and so do the files read back.
CHOICES = {"model": MODELS, "clip": CLIP_METHODS, "dataset": DATASETS, "on_nonfinite": ON_NONFINITE,
           "activation": ACTIVATIONS, "init": INITS, "optimizer": OPTIMIZERS, "loss": LOSSES, "norm": NORMS}
# Each model's defaults for the keys a user does not give: the tutorial's net, and for the
# recurrent net one width of 128 with tanh, the natural activation of a recurrence
MODEL_DEFAULTS = {"mlp": {"hidden": REFERENCE_HIDDEN, "activation": "relu"},
                  "rnn": {"hidden": (RNN_HIDDEN,), "activation": "tanh"}}
# The options each optimizer reads (Keras 3's names: beta1 is beta_1); the others' are refused.
OPTIMIZER_KEYS = {
    "sgd": ("momentum", "nesterov"),
    "adam": ("beta1", "beta2", "epsilon"),
    "rmsprop": ("rho", "momentum", "epsilon"),
}
MAX_HIDDEN_LAYERS = 64
MAX_WIDTH = 4096
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class Range:
    """A number's allowed values, as the message names them ("> 0", "a number in [0, 1)").
    The value is checked as given and again as the float32 training computes with."""

    words: str
    low: float = 0.0
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    hint: str = ""  # said after every refusal of this field

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.high)

    def holds(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return bool(above and below)


POSITIVE = Range("> 0", low_open=True)
FRACTION = Range("a number in [0, 1)", high=1.0, high_open=True)
# Every config field with a range: one check (check_range) for all of them.
RANGES = {
    "clip_norm": POSITIVE,
    "lr": POSITIVE,
    "input_scale": POSITIVE,
    "epsilon": POSITIVE,
    "recurrent_gain": POSITIVE,
    "dirty_scale": POSITIVE,
    "momentum": FRACTION,
    "beta1": FRACTION,
    "beta2": FRACTION,
    "rho": FRACTION,
    "dirty_fraction": dataclasses.replace(FRACTION, hint="; 0 leaves the data clean"),
    "clip_percentile": Range("a number from 0 to 100", high=100.0),
}
FLOAT32_RANGE = "about 1.2e-38 to 3.4e38"


def tensor_names(n_layers: int) -> tuple[str, ...]:
    """w1 b1 ... wL bL for a net of n_layers weight layers (the last is the output layer)."""
    return tuple(f"{kind}{layer}" for layer in range(1, n_layers + 1) for kind in ("w", "b"))


# The reference net's tensors; a Config's own are Config.param_names.
PARAM_NAMES = tensor_names(len(REFERENCE_HIDDEN) + 1)


def layer_sizes(hidden: tuple[int, ...] = REFERENCE_HIDDEN) -> tuple[int, ...]:
    return (N_INPUTS, *hidden, N_CLASSES)


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
    hidden: tuple[int, ...] = None  # type: ignore[assignment]  # None: the model's default (MODEL_DEFAULTS)
    activation: str = None  # type: ignore[assignment]  # None: the model's default
    init: str = "reference"
    clip_percentile: float = 10.0
    optimizer: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7
    rho: float = 0.9
    loss: str = "mse"
    norm: str = "none"
    residual: bool = False
    model: str = "mlp"
    recurrent_gain: float = 1.0
    dirty_fraction: float = 0.0
    dirty_scale: float = 100.0

    def __post_init__(self) -> None:
        for key in CONFIG_KEYS:  # every value in its field's type, as a config file's would be
            value = getattr(self, key)
            if value is not None or key not in OPTIONAL_KEYS:
                object.__setattr__(self, key, coerce_value(key, value, empty_ok=True))
        _check_choice("model", self.model, MODELS)
        for key, value in MODEL_DEFAULTS[self.model].items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        for name, allowed in CHOICES.items():
            _check_choice(name, getattr(self, name), allowed)
        self._check_optimizer()
        if self.clip not in ("none", "autoclip"):
            check_range("clip_norm", self.clip_norm, f" for {named('clip', self.clip)}",
                        f"; use {named('clip', 'none')} to train without clipping")
        check_range("clip_percentile", self.clip_percentile)
        check_range("lr", self.lr)
        check_range("input_scale", self.input_scale)
        with np.errstate(over="ignore"):
            pixels_fit = np.isfinite(np.float32(255.0) / np.float32(self.input_scale))
        if not pixels_fit:
            raise InputError(f"{named('input_scale')}: {self.input_scale:g} is too small: 255 / {self.input_scale:g} "
                             "overflows float32", "input_scale")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{named(name)}: must be an integer >= 1 (got {getattr(self, name)})", name)
        if not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"{named('seed')}: must be an integer from 0 to {MAX_SEED} (got {self.seed})", "seed")
        check_hidden(self.hidden)
        self._check_model()
        self._check_dirt()
        if self.residual and not self.net.has_residual:
            sizes = "-".join(map(str, layer_sizes(self.hidden)))
            raise InputError(f"{named('residual')}: no hidden layer of this net ({sizes}) has equal input and output "
                             f"widths, which a residual connection needs; give equal widths, e.g. {named('hidden', '128x10')}",
                             "residual")
        for name in ("train", "freeze"):
            for tensor in getattr(self, name):
                if tensor not in self.param_names:
                    normalised = "; a normalised layer has gamma and beta instead of a bias" if self.norm != "none" else ""
                    raise InputError(
                        f"{named(name)}: unknown tensor '{tensor}'; allowed: {', '.join(self.param_names)} "
                        f"(this net has {self.n_layers} weight layers{normalised})", name
                    )
        if self.train and self.freeze:
            raise InputError(f"{named('freeze')}: give either {named('train')} or {named('freeze')}, not both "
                             "(freeze is the complement of train)", "freeze")
        if set(self.freeze) == set(self.param_names):
            raise InputError(f"{named('freeze')}: names every tensor; at least one must be trained", "freeze")

    def _check_dirt(self) -> None:
        check_range("dirty_fraction", self.dirty_fraction)
        check_range("dirty_scale", self.dirty_scale)
        with np.errstate(over="ignore"):
            dirty_fits = np.isfinite(np.float32(255.0) / np.float32(self.input_scale) * np.float32(self.dirty_scale))
        if self.dirty_fraction > 0 and not dirty_fits:
            raise InputError(f"{named('dirty_scale')}: {self.dirty_scale:g} times the largest input "
                             f"(255 / {self.input_scale:g}) overflows float32", "dirty_scale")

    def _check_optimizer(self) -> None:
        for name in ("momentum", "beta1", "beta2", "rho", "epsilon"):
            check_range(name, getattr(self, name))
        # a non-default value of another optimizer's option is a mistake, not a no-op
        defaults = {f.name: f.default for f in fields(Config)}
        foreign = [name for name in optimizer_option_keys() if name not in OPTIMIZER_KEYS[self.optimizer]
                   and getattr(self, name) != defaults[name]]
        if foreign:
            raise InputError(foreign_option_message(foreign[0], self.optimizer), foreign[0])

    def _check_model(self) -> None:
        check_range("recurrent_gain", self.recurrent_gain)
        if self.model != "rnn":
            if self.recurrent_gain != 1.0:
                raise InputError(model_option_message("recurrent_gain"), "recurrent_gain")
            return
        if len(self.hidden) != 1:
            given = format_hidden(self.hidden)
            raise InputError(f"{named('hidden')}: the recurrent net has one hidden width (got {given}); "
                             f"e.g. {named('hidden', '128')}", "hidden")
        for name, off in (("norm", "none"), ("residual", False)):
            if getattr(self, name) != off:
                raise InputError(f"{named(name)}: applies to the MLP's dense hidden layers, not to "
                                 f"{named('model', 'rnn')}", name)

    @property
    def optimizer_settings(self) -> dict[str, Any]:
        """The options the optimizer reads, e.g. {'beta1': 0.9, 'beta2': 0.999, 'epsilon': 1e-07}."""
        return {name: getattr(self, name) for name in OPTIMIZER_KEYS[self.optimizer]}

    @property
    def n_layers(self) -> int:
        """Weight layers: the hidden ones plus the output layer."""
        return len(self.hidden) + 1

    @property
    def net(self) -> Net:
        """The net this config describes: its layers and their tensors."""
        return Net.of(self)

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.net.names

    def steps_per_epoch(self, train_size: int) -> int:
        """Batches per epoch; the last one is shorter when batch_size does not divide train_size."""
        return -(-train_size // self.batch_size)

    @property
    def trainable(self) -> tuple[str, ...]:
        """The tensors that SGD updates, in parameter order."""
        if self.train:
            return tuple(name for name in self.param_names if name in self.train)
        return tuple(name for name in self.param_names if name not in self.freeze)

    def replace(self, **changes: Any) -> "Config":
        """A copy with these changes. Another model brings its own defaults for the hidden
        widths and the activation, unless they are given or were changed from this model's."""
        model = changes.get("model", self.model)
        if model != self.model and model in MODEL_DEFAULTS:
            changes = {**{key: None for key, value in MODEL_DEFAULTS[self.model].items()
                          if key not in changes and getattr(self, key) == value}, **changes}
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        for key in ("train", "freeze", "hidden"):
            values[key] = list(getattr(self, key))
        return values


CONFIG_KEYS = tuple(f.name for f in fields(Config))


def _checked_init(init):
    """Config's own __init__, behind a check of what it is given: an unknown key or a value
    given twice is an InputError naming it, as in a config file, not a TypeError."""
    @functools.wraps(init)
    def __init__(self, *args: Any, **values: Any) -> None:
        if len(args) > len(CONFIG_KEYS):
            raise InputError(f"Config takes at most {len(CONFIG_KEYS)} values in order ({', '.join(CONFIG_KEYS)}); "
                             f"got {len(args)}: give them by name")
        for key, value in zip(CONFIG_KEYS, args):
            if key in values:
                raise InputError(f"{named(key)}: given twice, in order and by name; give it once", key)
            values[key] = value
        for key in values:
            if key not in CONFIG_KEYS:
                raise InputError(unknown_key_message(str(key)))
        init(self, **values)

    return __init__


Config.__init__ = _checked_init(Config.__init__)
FIELD_TYPES = {f.name: f.type for f in fields(Config)}
_EXACT_TYPES = {"int": int, "float": float, "bool": bool, "str": str}
# Fields whose None means "the model's default" (hidden, activation) or "no file" (data_path).
OPTIONAL_KEYS = ("hidden", "activation", "data_path")


def optimizer_option_keys() -> tuple[str, ...]:
    """Every optimizer's options, each once, in OPTIMIZER_KEYS order."""
    return tuple(dict.fromkeys(name for names in OPTIMIZER_KEYS.values() for name in names))


def foreign_option_message(name: str, optimizer: str) -> str:
    users = [kind for kind, names in OPTIMIZER_KEYS.items() if name in names]
    return (f"{named(name)}: an option of {' and '.join(users)}, not of {named('optimizer', optimizer)}; "
            f"{optimizer} takes {', '.join(named(key) for key in OPTIMIZER_KEYS[optimizer])}")


def model_option_message(name: str) -> str:
    return f"{named(name)}: an option of {named('model', 'rnn')}; the MLP has no recurrent weight"


def check_given_keys(given: Mapping[str, Any], optimizer: str, model: str) -> None:
    """Refuse an option given for another optimizer or model even at its default value
    (--nesterov with adam, --recurrent-gain without --model rnn)."""
    for name in given:
        if name in optimizer_option_keys() and name not in OPTIMIZER_KEYS[optimizer]:
            raise InputError(foreign_option_message(name, optimizer), name)
        if name == "recurrent_gain" and model != "rnn":
            raise InputError(model_option_message(name), name)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"{named(name)}: unknown value '{value}'; allowed: {', '.join(allowed)}", name)


def check_range(name: str, value: float, context: str = "", hint: str = "") -> None:
    """`value` within RANGES[name], both as given and as the float32 that training computes
    with: a number that float32 rounds onto a bound (beta2 0.99999999 is 1.0), past its range
    (1e39 is inf) or to a subnormal (1e-40, which TensorFlow's kernels flush to 0) is refused."""
    if (name, value) in _IN_RANGE:
        return
    allowed = RANGES[name]
    hint = hint or allowed.hint
    must = f"must be {allowed.words}" if allowed.bounded else f"must be {allowed.words}{context}"
    if not math.isfinite(value) and not allowed.bounded:
        raise InputError(f"{named(name)}: must be a finite number{context} (got {value}){hint}", name)
    if not (math.isfinite(value) and allowed.holds(value)):
        raise InputError(f"{named(name)}: {must} (got {value}){hint}", name)
    with np.errstate(over="ignore", under="ignore"):
        as_float32 = np.float32(value)
    where = "in float32, where training runs"
    if not np.isfinite(as_float32) or (value != 0 and as_float32 == 0 and not allowed.holds(0.0)):
        raise InputError(f"{named(name)}: {value:g} is outside float32's range ({FLOAT32_RANGE}){context}; "
                         f"it is {str(as_float32)} {where}{hint}", name)
    if value != 0 and abs(as_float32) < np.finfo(np.float32).tiny and not allowed.holds(0.0):
        raise InputError(f"{named(name)}: {value:g} is outside float32's range ({FLOAT32_RANGE}){context}; {where}, "
                         f"it is a subnormal number that TensorFlow's kernels flush to 0{hint}", name)
    if not allowed.holds(float(as_float32)):
        bound = allowed.high if as_float32 >= allowed.high else allowed.low
        side = "below" if bound == allowed.high else "above"
        inside = np.nextafter(np.float32(bound), np.float32(-np.inf if side == "below" else np.inf))
        raise InputError(f"{named(name, value)} is {str(as_float32)} {where}{context}; it must be {side} {bound:g} "
                         f"(at {'most' if side == 'below' else 'least'} {str(np.float32(inside))}){hint}", name)
    if len(_IN_RANGE) > 4096:  # the values seen before: a plan of many runs checks each setting once
        _IN_RANGE.clear()
    _IN_RANGE.add((name, value))


_IN_RANGE: set[tuple[str, float]] = set()


def _check_float32_positive(name: str, value: float, context: str = "", hint: str = "") -> None:
    """check_range for a field that must be > 0 (its entry in RANGES, else POSITIVE)."""
    RANGES.setdefault(name, POSITIVE)
    check_range(name, value, context, hint)


def check_hidden(hidden: tuple[int, ...]) -> None:
    if len(hidden) > MAX_HIDDEN_LAYERS:
        raise InputError(f"{named('hidden')}: {len(hidden)} layers; at most {MAX_HIDDEN_LAYERS} hidden layers are allowed",
                         "hidden")
    for width in hidden:
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= MAX_WIDTH:
            raise InputError(f"{named('hidden')}: width {width!r} is not allowed; widths are whole numbers from 1 to "
                             f"{MAX_WIDTH}", "hidden")


_HIDDEN_PART = re.compile(r"^\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*$")


def parse_hidden(text: str, where: str | None = None) -> tuple[int, ...]:
    """'256,128' -> (256, 128); '128x10' -> ten layers of 128; '256,128x4'; 'none' -> ().
    `where` names what is read in errors (default: the hidden key)."""
    where = where or named("hidden")
    text = text.strip()
    if text.lower() in ("none", "[]"):
        return ()
    widths: list[int] = []
    for part in text.split(","):
        match = _HIDDEN_PART.match(part)
        if not match:
            raise InputError(
                f"{where}: cannot read {part.strip()!r}; give widths like 256,128 or 128x10 (ten layers of 128), or none",
                "hidden",
            )
        width, repeat = int(match.group(1)), int(match.group(2) or 1)
        if repeat < 1 or repeat > MAX_HIDDEN_LAYERS:
            raise InputError(f"{where}: {part.strip()!r} repeats a layer {repeat} times; allowed 1 to {MAX_HIDDEN_LAYERS}",
                             "hidden")
        widths.extend([width] * repeat)
        if len(widths) > MAX_HIDDEN_LAYERS:
            break
    result = tuple(widths)
    check_hidden(result)
    return result


def format_hidden(hidden: tuple[int, ...]) -> str:
    """The compact spelling: (256, 128) -> '256,128'; ten 128s -> '128x10'; () -> 'none'."""
    if not hidden:
        return "none"
    parts = []
    for width in hidden:
        if parts and parts[-1][0] == width:
            parts[-1][1] += 1
        else:
            parts.append([width, 1])
    return ",".join(f"{w}x{n}" if n > 1 else str(w) for w, n in parts)


def normalize_key(key: str) -> str:
    """Config keys are the CLI option names; both `clip-norm` and `clip_norm` work."""
    return key.strip().replace("-", "_")


def _initials(key: str) -> str:
    return "".join(word[:1] for word in key.split("_") if word)


def nearest_key(key: str, keys: tuple[str, ...] = ()) -> str | None:
    """The valid key a misspelt or differently named one most likely means: a close
    spelling (epoch -> epochs), or the initials of its words (learning_rate -> lr)."""
    keys = keys or CONFIG_KEYS
    key = normalize_key(str(key)).lower()
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if close:
        return close[0]
    by_initials = [valid for valid in keys if _initials(key) in (valid, _initials(valid)) and "_" in key + valid]
    if len(by_initials) == 1:
        return by_initials[0]
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    return close[0] if close else None


def unknown_key_message(key: str, what: str = "config key", keys: tuple[str, ...] = ()) -> str:
    keys = keys or CONFIG_KEYS
    close = nearest_key(key, keys)
    hint = f"did you mean '{close}'? " if close else ""
    return f"unknown {what} '{key}'; {hint}valid keys: {', '.join(keys)}"


def coerce_value(key: str, value: Any, empty_ok: bool = False) -> Any:
    """Check one value's type against the Config field; return it in the field's type. NumPy
    numbers count as numbers (a float32 value is the same number as a float). With empty_ok,
    an empty tensor list is allowed (a Config's default), else it is refused as given by mistake."""
    kind = FIELD_TYPES[key]
    if type(value) is _EXACT_TYPES.get(kind):  # already in the field's type: nothing to convert
        return value

    def bad(expected: str) -> InputError:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        return InputError(f"{named(key)}: must be {expected} (got {type(value).__name__} {shown})", key)

    if kind == "int":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise bad("an integer")
        return int(value)
    if kind == "float":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise bad("a number")
        return float(value)
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise bad("true or false")
        return bool(value)
    if kind == "str":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if kind == "str | None":
        if value is None:
            return None
        if not isinstance(value, (str, Path)):
            raise bad("a path string")
        return str(value) or None
    if kind == "tuple[int, ...]":
        if isinstance(value, str):
            return parse_hidden(value)
        if isinstance(value, (list, tuple)) and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                                                    for v in value):
            check_hidden(tuple(int(v) for v in value))
            return tuple(int(v) for v in value)
        raise bad("a list of layer widths such as [256, 128], or a string such as \"128x10\"")
    # tuple[str, ...]: a list of tensor names or one comma-separated string
    if isinstance(value, str):
        names = parse_tensor_list(value)
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = tuple(v.strip() for v in value if v.strip())
    else:
        raise bad("a list of tensor names such as [\"w3\", \"b3\"]")
    if not names and not (empty_ok and not value):
        raise InputError(f"{named(key)}: is empty; name at least one tensor, e.g. w3,b3 (or leave {named(key)} out)", key)
    return names


def parse_tensor_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def values_from_mapping(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Validate keys and types of a {key: value} mapping; return Config field values."""
    values: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise InputError(f"config keys are strings; got {type(key).__name__} {key!r}")
        name = normalize_key(key)
        if name not in CONFIG_KEYS:
            raise InputError(unknown_key_message(key))
        if name in spelled:
            raise InputError(f"{named(name)}: '{spelled[name]}' and '{key}' are the same key; give it once", name)
        spelled[name] = key
        values[name] = coerce_value(name, value)
    return values


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a config file into validated Config field values (only the keys it sets).
    An empty file (or /dev/null) sets nothing: the defaults."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror.lower() if isinstance(err, OSError) and err.strerror else str(err)
        raise InputError(f"cannot read config file {path}: {reason}") from None
    try:
        mapping = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"malformed TOML in {path}: {err}") from None
    try:
        return values_from_mapping(mapping)
    except InputError as err:
        raise err.retold(f"{path}: ", "python") from None


def resolve(file_values: Mapping[str, Any], cli_values: Mapping[str, Any], file: str | Path | None = None) -> Config:
    """Precedence: command line, then config file, then the defaults. An error about a value
    that came from the file names the file and the key as the file spells it."""
    merged = {**file_values, **cli_values}
    try:
        check_given_keys(merged, merged.get("optimizer", Config.optimizer), merged.get("model", Config.model))
        return Config(**merged)
    except InputError as err:
        if file is not None and err.key in file_values and err.key not in cli_values:
            raise err.retold(f"{file}: ", "python") from None
        raise
