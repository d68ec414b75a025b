"""The packaged recipes (configs/*.toml): find one by name, list them with their descriptions."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from mnist_clip.errors import InputError


def recipes_folder() -> Path:
    """Where the recipes are: inside the installed package (mnist_clip/configs/), or the
    top-level configs/ of a source checkout (an editable install)."""
    package = Path(__file__).resolve().parent
    installed = package / "configs"
    return installed if installed.is_dir() else package.parent / "configs"


def recipe_names() -> list[str]:
    return sorted(path.stem for path in recipes_folder().glob("*.toml"))


def describe(path: Path) -> str:
    """A recipe's first sentence, from the comment that opens it: what it is."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        words.append(line.lstrip("#").strip())
    text = " ".join(words)
    end = re.search(r"(?<! al)\.(\s|$)", text)  # the first full stop that is not "et al."
    return text[: end.start() + 1] if end else text


def recipes() -> dict[str, str]:
    """{name: one-line description} of every packaged recipe."""
    return {name: describe(recipes_folder() / f"{name}.toml") for name in recipe_names()}


# A recipe's comment may say how long its point takes to show, measured:
# "# needs about 15 epochs to leave chance (...)".
NEEDS = re.compile(r"^#\s*needs about (\d+) epochs? (to [^.;(]+?)\s*(?:[.;(]|$)")


def epochs_needed(name: str | None) -> tuple[int, str] | None:
    """(epochs, what they show) from a packaged recipe's "needs about N epochs to ..." line."""
    if not name:
        return None
    path = recipes_folder() / f"{name}.toml"
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        found = NEEDS.match(line)
        if found:
            return int(found.group(1)), found.group(2)
    return None


def short_run_line(name: str | None, epochs: int) -> str | None:
    """One line when a run of the recipe has fewer epochs than its point needs:
    'deep_sigmoid_batchnorm needs about 15 epochs to leave chance; this run has 5'."""
    needed = epochs_needed(name)
    if needed is None or epochs >= needed[0]:
        return None
    return f"{name} needs about {needed[0]} epochs {needed[1]}; this run has {epochs}"


def recipe_name(given: str | Path | None) -> str | None:
    """The name a recipe or TOML file gives its runs: the file's name without .toml."""
    if given is None:
        return None
    name = Path(given).name
    return (name[: -len(".toml")] if name.endswith(".toml") else name) or None


def resolve_config_file(given: str | Path) -> Path:
    """--config as given: a path that exists, else a packaged recipe's name (explode or
    explode.toml), else an error that lists the recipes."""
    path = Path(given)
    # a folder is reported as such by the TOML loader; /dev/null reads as an empty file: the defaults
    if path.is_file() or path.is_dir() or path.is_char_device():
        return path
    stem = path.name[: -len(".toml")] if path.name.endswith(".toml") else path.name
    packaged = recipes_folder() / f"{stem}.toml"
    if path.parent == Path(".") and packaged.is_file():
        return packaged
    close = difflib.get_close_matches(stem, recipe_names(), n=1, cutoff=0.6) if path.parent == Path(".") else []
    if close:
        raise InputError(f"config file not found: {given}; did you mean the recipe '{close[0]}'? "
                         "(see `mnist-clip recipes`)")
    raise InputError(f"config file not found: {given}; give a path, or a recipe name: {', '.join(recipe_names())}")
