"""The shape of every JSON file mnist-clip reads back (config.json, summary.json, sweep.json,
cures.json), described once per file kind and checked by one function before any reader uses it.

A file of the wrong shape (a list where an object belongs, a string where a number does, a
nested key of the wrong type) is an InputError of one line that names the file and the key;
nothing is written before the check. Keys a file kind does not describe are left alone (a
newer or older version's), and a described key may be absent (an older version's file).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from mnist_clip.errors import InputError

HAND_CHANGED = "the file was changed by hand?"


@dataclass(frozen=True)
class Shape:
    """A JSON value's allowed shape: `words` say what it must be, `test` tells, and an object's
    `keys` (with those `required`) or a list's `item` are checked in turn."""

    words: str
    test: Callable[[Any], bool]
    keys: Mapping[str, "Shape"] | None = None
    required: tuple[str, ...] = ()
    item: "Shape | None" = None
    values: "Shape | None" = None  # every value of an object whose keys are free (tensor names)
    check: Callable[[str, Any], None] | None = field(default=None, compare=False)  # a value check after the type

    def or_null(self) -> "Shape":
        """The same shape, or null."""
        return Shape(f"{self.words} or null", lambda v: v is None or self.test(v), self.keys, self.required, self.item,
                     self.values, self.check)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


STRING = Shape("a string", lambda v: isinstance(v, str))
BOOL = Shape("true or false", lambda v: isinstance(v, bool))
NUMBER = Shape("a number", _is_number)
INTEGER = Shape("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool))
COUNT = Shape("a whole number >= 1", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1)


def obj(keys: Mapping[str, Shape] | None = None, required: tuple[str, ...] = (), values: Shape | None = None) -> Shape:
    return Shape("an object", lambda v: isinstance(v, dict), dict(keys or {}), required, values=values)


def listed(item: Shape, words: str | None = None) -> Shape:
    return Shape(words or f"a list of {item.words.removeprefix('a ').removeprefix('an ')}s",
                 lambda v: isinstance(v, list), item=item)


def _described(value: Any) -> str:
    if value is None:
        return "null"
    kind = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if _is_number(value) else type(value).__name__)
    if isinstance(value, (dict, list)):
        return f"{'an' if kind == 'object' else 'a'} {kind}"
    shown = json.dumps(value) if not (isinstance(value, float) and not math.isfinite(value)) else repr(value)
    return f"{kind} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def check_shape(value: Any, shape: Shape, where: str, at: str = "") -> None:
    """InputError(one line) unless `value` has `shape`; `where` names the file, `at` the key in it."""
    place = f"{where}: {at}" if at else where
    if not shape.test(value):
        if not at and shape.keys is not None:  # the whole file: the wording plot and compare always used
            found = "null" if value is None else type(value).__name__
            raise InputError(f"{where}: expected a JSON object, found {found}; {HAND_CHANGED}")
        raise InputError(f"{place}: must be {shape.words}, found {_described(value)}; {HAND_CHANGED}")
    if value is None:
        return
    if shape.check is not None:
        shape.check(place, value)
    if shape.keys is not None:
        for key in shape.required:
            if key not in value:
                raise InputError(f"{where}: no {f'{at}.' if at else ''}{key}; {HAND_CHANGED}")
        for key, item in value.items():
            inner = shape.keys.get(key, shape.values)
            if inner is not None:
                check_shape(item, inner, where, f"{at}.{key}" if at else str(key))
    if shape.item is not None:
        for index, item in enumerate(value):
            check_shape(item, shape.item, where, f"{at}[{index}]")


def _config_value(key: str) -> Callable[[str, Any], None]:
    """A config key's value as mnist-clip writes it: the Config field's type (a list for the
    tuple fields) and, for a choice, one of its values."""
    def check(place: str, value: Any) -> None:
        from mnist_clip.config import CHOICES, FIELD_TYPES, coerce_value

        if FIELD_TYPES[key].startswith("tuple") and not isinstance(value, list):
            raise InputError(f"{place}: must be a list, found {_described(value)}; {HAND_CHANGED}")
        try:
            coerce_value(key, value, empty_ok=True)
        except InputError as err:
            body = err.render("python").split(": ", 1)[1]
            raise InputError(f"{place}: {body}; {HAND_CHANGED}") from None
        if key in CHOICES and value not in CHOICES[key]:
            raise InputError(f"{place}: {value!r} is not a value mnist-clip writes (allowed: {', '.join(CHOICES[key])}); "
                             f"{HAND_CHANGED}")
    return check


def config_shape() -> Shape:
    """The config keys of a file, each of its Config field's type; null only where a field may
    be unset (data_path, and clip_norm, which a NaN with clip none is written as)."""
    from mnist_clip.config import CONFIG_KEYS, FIELD_TYPES, OPTIONAL_KEYS

    nullable = (*OPTIONAL_KEYS, "clip_norm")
    return obj({key: Shape(FIELD_WORDS.get(FIELD_TYPES[key], "a list"), lambda v, key=key: v is not None or key in nullable,
                           check=_config_value(key)) for key in CONFIG_KEYS})


FIELD_WORDS = {"float": "a number", "int": "a whole number", "bool": "true or false", "str": "a string",
               "str | None": "a path or null"}


def _with(shape: Shape, keys: Mapping[str, Shape], required: tuple[str, ...] = ()) -> Shape:
    return obj({**shape.keys, **keys}, required)


NUMBER_OR_NULL = NUMBER.or_null()
DATASET_USED = obj({"name": STRING, "source": STRING, "reason": STRING, "train_size": INTEGER, "test_size": INTEGER})
DIAGNOSIS = obj({"cause": STRING, "text": listed(STRING, "a list of strings")})


def run_config_shape() -> Shape:
    """config.json: every resolved parameter, the trained tensors and the data used."""
    return _with(config_shape(), {"trainable": listed(STRING, "a list of strings"), "dataset_used": DATASET_USED,
                                  "mnist_clip_version": STRING, "tensorflow_version": STRING})


SUMMARY = obj({
    "status": STRING,
    "steps": INTEGER,
    "epochs_completed": INTEGER,
    "final_train_loss": NUMBER_OR_NULL,
    "final_step_loss": NUMBER_OR_NULL,
    "test_loss": NUMBER_OR_NULL,
    "test_accuracy": NUMBER_OR_NULL,
    "clipped_steps": INTEGER,
    "clipped_fraction": NUMBER,
    "clipped_steps_per_tensor": obj(values=INTEGER),
    "clipped_fraction_per_tensor": obj(values=NUMBER),
    "first_nonfinite_step": INTEGER.or_null(),
    "wall_seconds": NUMBER,
    "train_seconds": NUMBER,
    "ms_per_step": NUMBER_OR_NULL,
    "ms_per_step_includes_compiling": BOOL,
    "compared_quantity": STRING,
    "largest_compared_value": NUMBER_OR_NULL,
    "clipping_never_acted": BOOL,
    "diagnosis": DIAGNOSIS.or_null(),
}, required=("status",))


def plan_shape(config_key: str) -> Shape:
    """sweep.json (the grid, the base config, the seeds), cures.json (base, seeds, cures) and
    demo.json (config, seeds): the record a resumed plan is checked against."""
    grid_entry = Shape("a [key, [values]] pair", lambda v: isinstance(v, list) and len(v) == 2
                       and isinstance(v[0], str) and isinstance(v[1], list))
    return obj({config_key: config_shape(), "seeds": COUNT, "grid": listed(grid_entry, "a list of [key, [values]] pairs"),
                "cures": listed(STRING, "a list of strings")})


def read_json(path: Path, shape: Shape) -> Any:
    """A JSON file of this shape, or InputError saying what is wrong with its shape. A file
    that cannot be read or parsed raises OSError or ValueError, for the caller to say which
    file of what it is (a run's, a plan's)."""
    value = json.loads(path.read_text(encoding="utf-8"))
    check_shape(value, shape, str(path))
    return value


def read_run_config(path: Path) -> dict:
    return read_json(path, run_config_shape())


def read_summary(path: Path) -> dict:
    return read_json(path, SUMMARY)


def read_plan_record(path: Path, config_key: str = "base") -> dict:
    return read_json(path, plan_shape(config_key))
