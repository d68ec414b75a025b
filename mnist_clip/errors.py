"""The one exception type for bad input, shown to the user as a single line in their own words."""

from __future__ import annotations

import re
from typing import Any

# A parameter named inside a message is a marked token; it is spelled out only when the
# message is shown, in the language of whoever gave the value: `--clip-norm` and
# `--clip none` on the command line, `clip_norm` and `clip='none'` in Python and TOML.
_OPEN, _SEP, _CLOSE = "\x1e", "\x1d", "\x1f"
_TOKEN = re.compile(f"{_OPEN}([^{_SEP}{_CLOSE}]*)(?:{_SEP}([^{_CLOSE}]*))?{_CLOSE}")
LANGUAGES = ("python", "cli")
_UNSET = object()


def name(key: str, value: Any = _UNSET) -> str:
    """The parameter `key` (a config key or an argument such as name, overwrite, seeds), or
    the setting key=value, as it appears in an InputError message."""
    if value is _UNSET:
        return f"{_OPEN}{key}{_CLOSE}"
    return f"{_OPEN}{key}{_SEP}{value!r}{_CLOSE}"


def render(text: str, language: str = "python") -> str:
    """The message with its parameters spelled as the user spells them."""
    def spell(match: re.Match) -> str:
        key, value = match.group(1), match.group(2)
        if language == "cli":
            option = "--" + key.replace("_", "-")
            if value is None:
                return option
            if value in ("True", "False"):
                return option if value == "True" else "--no-" + key.replace("_", "-")
            shown = value[1:-1] if value[:1] in "'\"" else value
            return f"{option} {'none' if shown == 'None' else shown}"
        return key if value is None else f"{key}={value}"

    return _TOKEN.sub(spell, text)


class InputError(ValueError):
    """Invalid user input: a config value, a data file, a run folder.

    The message is one line that says what is wrong and what is allowed, and it begins
    with the parameter at fault when there is one ("clip_norm: must be > 0 ..."). `key` is
    that parameter. str() speaks Python (and TOML); the CLI shows render("cli") unless the
    value came from a config file. The CLI prints it on stderr and exits with status 2.
    """

    def __init__(self, message: str, key: str | None = None, language: str | None = None):
        super().__init__(message)
        self.key = key
        self.language = language  # fixed when the value's origin is known; None: the caller's

    @property
    def template(self) -> str:
        return self.args[0] if self.args else ""

    def render(self, language: str = "python") -> str:
        return render(self.template, self.language or language)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"InputError({self.render()!r})"

    def retold(self, prefix: str = "", language: str | None = None) -> "InputError":
        """The same error with `prefix` in front; with `language`, its own words fixed in that
        language (the value came from a config file: the key is named as the file names it)."""
        body = render(self.template, language) if language else self.template
        return InputError(prefix + body, self.key, None if language else self.language)


class Interrupted(Exception):
    """A stop was asked for (SIGINT/SIGTERM) before any result existed; nothing was written."""

    def __init__(self, exit_code: int):
        super().__init__(f"interrupted before training started; nothing was written (exit status {exit_code})")
        self.exit_code = exit_code
