"""The README's tables against the code: every option of `train` with every choice it takes,
every clipping method, every recipe."""

import re
from pathlib import Path

import click

from mnist_clip.cli import cli
from mnist_clip.config import CLIP_METHODS
from mnist_clip.recipe_files import recipe_names

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def table_after(heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table after a heading line."""
    lines = README[README.index(heading + "\n"):].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def option_names(cell: str) -> set[str]:
    """'`--shuffle/--no-shuffle`' -> {'--shuffle', '--no-shuffle'}; '`--train w3,b3`' -> {'--train'}."""
    return set(re.findall(r"--[a-z][a-z0-9-]*", cell))


def test_the_train_options_table_lists_every_option_and_every_choice():
    rows = {name: row for row in table_after("### `train` options") for name in option_names(row[0])}
    for param in cli.commands["train"].params:
        if not isinstance(param, click.Option) or param.hidden or "--help" in param.opts:
            continue
        longs = [opt for opt in param.opts if opt.startswith("--")]
        name = longs[0]
        assert any(opt in rows for opt in longs), f"README's train options table has no row for {longs}"
        row = rows[next(opt for opt in longs if opt in rows)]
        if isinstance(param.type, click.Choice):
            text = " ".join(row[1:])
            missing = [choice for choice in param.type.choices if f"`{choice}`" not in text]
            assert not missing, f"README's row for {name} does not name {missing}"


def test_the_clipping_methods_table_has_every_method():
    methods = [row[0].strip("`") for row in table_after("### Clipping methods")]
    assert sorted(methods) == sorted(CLIP_METHODS)


def test_the_recipes_table_names_every_recipe():
    named = " ".join(row[0] for row in table_after("## Recipes"))
    assert [name for name in recipe_names() if f"`{name}.toml`" not in named] == []
