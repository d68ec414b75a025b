"""How a Config field declares itself (help, choices, range) and the one reader of its text."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_clip.errors import InputError, name as named

FLOAT32_RANGE = "about 1.2e-38 to 3.4e38"
MAX_HIDDEN_LAYERS = 64
MAX_WIDTH = 4096


@dataclass(frozen=True)
class Range:
    """A number's allowed values, as the message names them ("> 0", "a number in [0, 1)").
    A float field's value is checked as given and again as the float32 training computes with."""

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

    def check(self, name: str, value: float, context: str = "", hint: str = "", float32: bool = True) -> None:
        """InputError naming `name` unless `value` is in range; with float32, also as the float32
        that training computes with: a number that float32 rounds onto a bound (beta2 0.99999999
        is 1.0), past its range (1e39 is inf) or to a subnormal (1e-40, which TensorFlow's kernels
        flush to 0) is refused."""
        if (name, value) in _IN_RANGE:
            return
        hint = hint or self.hint
        must = f"must be {self.words}" if self.bounded else f"must be {self.words}{context}"
        if not math.isfinite(value) and not self.bounded:
            raise InputError(f"{named(name)}: must be a finite number{context} (got {value}){hint}", name)
        if not (math.isfinite(value) and self.holds(value)):
            raise InputError(f"{named(name)}: {must} (got {value}){hint}", name)
        if float32:
            self._check_float32(name, value, context, hint)
        if len(_IN_RANGE) > 4096:  # the values seen before: a plan of many runs checks each setting once
            _IN_RANGE.clear()
        _IN_RANGE.add((name, value))

    def _check_float32(self, name: str, value: float, context: str, hint: str) -> None:
        with np.errstate(over="ignore", under="ignore"):
            as_float32 = np.float32(value)
        where = "in float32, where training runs"
        if not np.isfinite(as_float32) or (value != 0 and as_float32 == 0 and not self.holds(0.0)):
            raise InputError(f"{named(name)}: {value:g} is outside float32's range ({FLOAT32_RANGE}){context}; "
                             f"it is {str(as_float32)} {where}{hint}", name)
        if value != 0 and abs(as_float32) < np.finfo(np.float32).tiny and not self.holds(0.0):
            raise InputError(f"{named(name)}: {value:g} is outside float32's range ({FLOAT32_RANGE}){context}; {where}, "
                             f"it is a subnormal number that TensorFlow's kernels flush to 0{hint}", name)
        if not self.holds(float(as_float32)):
            bound = self.high if as_float32 >= self.high else self.low
            side = "below" if bound == self.high else "above"
            inside = np.nextafter(np.float32(bound), np.float32(-np.inf if side == "below" else np.inf))
            raise InputError(f"{named(name, value)} is {str(as_float32)} {where}{context}; it must be {side} {bound:g} "
                             f"(at {'most' if side == 'below' else 'least'} {str(np.float32(inside))}){hint}", name)


_IN_RANGE: set[tuple[str, float]] = set()

POSITIVE = Range("> 0", low_open=True)
FRACTION = Range("a number in [0, 1)", high=1.0, high_open=True)
AT_LEAST_ONE = Range("an integer >= 1", low=1)


@dataclass(frozen=True)
class Option:
    """A Config field as the user meets it: on the command line, in a config file, in a sweep's
    grid and in the options table of the docs. `name`, `kind` (the field's annotation: int,
    float, bool, str, str | None, tuple[int, ...] or tuple[str, ...]) and `default` come from the
    field itself (declared())."""

    help: str
    choices: tuple[str, ...] = ()
    range: Range | None = None
    text_hint: str = ""  # said after a refusal of the option's text (--clip-norm none)
    name: str = ""
    kind: str = ""
    default: Any = None

    def help_text(self) -> str:
        """The command line's help: the field's help and its range (the choices are its metavar)."""
        return f"{self.help} Must be {self.range.words}." if self.range else self.help


def option(default: Any, help: str, *, choices: tuple[str, ...] = (), range: Range | None = None,
           text_hint: str = "") -> Any:
    """A Config field's default and its declaration: `clip_norm: float = option(15.0, "...", range=POSITIVE)`."""
    return dataclasses.field(default=default, metadata={"option": Option(help, tuple(choices), range, text_hint)})


def declared(cls: type) -> dict[str, Option]:
    """Every field of the dataclass `cls` as its Option, with its name, annotation and default."""
    options = {}
    for field in dataclasses.fields(cls):
        if "option" not in field.metadata:
            raise TypeError(f"{cls.__name__}.{field.name} is declared without option(): it needs its help text")
        kind = field.type.__name__ if isinstance(field.type, type) else str(field.type)  # "float", "str | None"
        options[field.name] = dataclasses.replace(field.metadata["option"], name=field.name, kind=kind,
                                                  default=field.default)
    return options


# --- text ----------------------------------------------------------------------------------

_NUMBER_WORDS = {"int": "a valid integer", "float": "a valid float"}
_NUMBERS = {"int": int, "float": float}


def parse_text(option: Option, text: str, where: str | None = None, joiner: str = ",") -> Any:
    """The one reader of an option's text: a command-line value, a sweep grid's value, or a list
    given as a string in a config file (hidden = "128x10"). Returns the value in the field's
    type, a choice checked against the field's choices. `joiner` separates a list's items (a
    grid joins them with +, since its values are separated by commas); `where` names the option
    in errors (default: the option itself)."""
    where = where or named(option.name)
    kind, text = option.kind, text.strip()
    if kind in _NUMBERS:
        try:
            return _NUMBERS[kind](text)
        except ValueError:
            raise InputError(f"{where}: {text!r} is not {_NUMBER_WORDS[kind]}{option.text_hint}", option.name) from None
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            raise InputError(f"{where}: {text!r} is not true or false{option.text_hint}", option.name)
        return text.lower() == "true"
    if kind == "tuple[int, ...]":
        return parse_hidden(text.replace(joiner, ","), where)
    if kind == "tuple[str, ...]":
        names = tuple(part.strip() for part in text.split(joiner) if part.strip())
        if not names:
            raise InputError(f"{where}: is empty; name at least one tensor, e.g. w3{joiner}b3 (or leave "
                             f"{named(option.name)} out)", option.name)
        return names
    if kind == "str | None":
        return text or None
    if option.choices and text not in option.choices:
        raise InputError(f"{where}: {text!r} is not one of {', '.join(map(repr, option.choices))}{option.text_hint}",
                         option.name)
    return text


def format_text(option: Option, value: Any) -> str:
    """A value as text that parse_text reads back as the same value: 15.0 -> '15', (256, 128) ->
    '256,128', True -> 'true'."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        short = f"{value:g}"  # 0.01, 15, 1e-07; the exact digits where 6 would change the number
        return short if float(short) == value or not math.isfinite(value) else repr(value)
    if option.kind == "tuple[int, ...]":
        return format_hidden(value)
    if isinstance(value, tuple):
        return ",".join(value)
    return "" if value is None else str(value)


# --- values of any type (Python, TOML) -------------------------------------------------------

_EXACT_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def coerce(option: Option, value: Any, empty_ok: bool = False) -> Any:
    """Check one value's type against its field; return it in the field's type. NumPy numbers
    count as numbers (a float32 value is the same number as a float); a string given for a list
    is read as its text. With empty_ok, an empty tensor list is allowed (a Config's default),
    else it is refused as given by mistake."""
    key, kind = option.name, option.kind
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
    if isinstance(value, str):
        return () if empty_ok and not value else parse_text(option, value)
    if kind == "tuple[int, ...]":
        if isinstance(value, (list, tuple)) and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                                                    for v in value):
            check_hidden(tuple(int(v) for v in value))
            return tuple(int(v) for v in value)
        raise bad("a list of layer widths such as [256, 128], or a string such as \"128x10\"")
    # tuple[str, ...]: a list of tensor names
    if not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
        raise bad("a list of tensor names such as [\"w3\", \"b3\"]")
    names = tuple(v.strip() for v in value if v.strip())
    if not names and not (empty_ok and not value):
        raise InputError(f"{named(key)}: is empty; name at least one tensor, e.g. w3,b3 (or leave {named(key)} out)", key)
    return names


# --- the hidden widths' spelling -------------------------------------------------------------

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
