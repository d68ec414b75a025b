"""The public Python functions' arguments: each checked against its annotation before the
function runs, with the one-line InputError the command line gives for a bad option."""

from __future__ import annotations

import collections.abc
import functools
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

from mnist_clip.errors import InputError, name as named

# What an argument must be, in the words of its error message; an argument not listed here
# is described from its annotation (KIND_WORDS).
WORDS = {
    "config": "a Config, a recipe name such as 'explode' or a TOML file's path",
    "data": "a Dataset from mnist_clip.data.load_dataset, or None to load the config's data",
    "out": "a folder path",
    "name": "a folder name",
    "print_every": "a whole number",
    "jobs": "a whole number",
    "seeds": "a whole number",
    "progress": "one of 'auto', 'bar', 'lines', 'quiet'",
    "metric": "a metric's name such as 'test_accuracy'",
    "cure": "a cure's name such as 'lower_lr', a list of them",
    "runs": "a list of runs (RunResults, Runs or run folders' paths), or one run",
    "path": "a run folder's path",
    "overrides": "a dict of config keys and their values such as {'lr': 0.05}",
    "grid": "a dict such as {'lr': [0.01, 0.1]}, strings such as 'lr=0.01,0.1'",
}
KIND_WORDS = {bool: "True or False", int: "a whole number", float: "a number", str: "a string", Path: "a path",
              type(None): "None"}

F = TypeVar("F", bound=Callable)


def shown(value: Any) -> str:
    """A value as an error message shows it: its type and its repr, cut short."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _alternatives(hint: Any) -> tuple:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def matches(value: Any, hint: Any) -> bool:
    """Whether `value` is of the annotated type: unions, None, bool apart from int, Path, and
    Iterable[X] / Mapping[K, V] with their items (a string is not an iterable of strings here)."""
    if hint is Any:
        return True
    if len(_alternatives(hint)) > 1:
        return any(matches(value, alternative) for alternative in _alternatives(hint))
    if hint is type(None):
        return value is None
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    origin, parts = typing.get_origin(hint) or hint, typing.get_args(hint)
    if origin is collections.abc.Mapping:
        return isinstance(value, collections.abc.Mapping) and (
            not parts or all(matches(k, parts[0]) and matches(v, parts[1]) for k, v in value.items()))
    if origin is collections.abc.Iterable:
        return (isinstance(value, collections.abc.Iterable) and not isinstance(value, (str, bytes))
                and (not parts or all(matches(item, parts[0]) for item in value)))
    return isinstance(value, origin)


def words(argument: str, hint: Any) -> str:
    kinds = _alternatives(hint)
    said = WORDS.get(argument) or " or ".join(KIND_WORDS.get(kind, f"a {getattr(kind, '__name__', kind)}")
                                            for kind in kinds if kind is not type(None))
    if type(None) in kinds and "None" not in said:
        said += ", or None" if "," in said else " or None"
    return said


def check_value(argument: str, value: Any, hint: Any) -> None:
    """InputError naming `argument` unless `value` is of the annotated type `hint`."""
    if not matches(value, hint):
        raise InputError(f"{named(argument)}: must be {words(argument, hint)} (got {shown(value)})", argument)


def checked(function: F) -> F:
    """Check every argument of `function` against its annotation before it runs (keyword
    overrides, **values, are config keys: make_config checks them). A generator given where
    an iterable is annotated is read once, into a list, and passed on as that list."""
    signature = inspect.signature(function)
    hints: dict[str, Any] = {}

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not hints:
            hints.update(typing.get_type_hints(function))  # at the first call: every name is defined by then
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as err:
            raise InputError(f"{function.__name__}(): {err}") from None
        for argument, value in bound.arguments.items():
            if signature.parameters[argument].kind is inspect.Parameter.VAR_KEYWORD or argument not in hints:
                continue
            hint = hints[argument]
            iterable = any(typing.get_origin(kind) is collections.abc.Iterable and typing.get_args(kind)
                           for kind in _alternatives(hint))
            if iterable and isinstance(value, collections.abc.Iterator):
                value = bound.arguments[argument] = list(value)
            check_value(argument, value, hint)
        return function(*bound.args, **bound.kwargs)

    return wrapper  # type: ignore[return-value]
