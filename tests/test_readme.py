"""README.md and the documentation site in docs/ against the code: every command, every option of
`train` with every choice it takes and its default (as the Config fields declare them), every
clipping method, recipe and cure, every column of the run folder's CSV files; and every relative
link of the README and the pages resolves."""

import re
import unicodedata
from pathlib import Path

import click
import pytest
import yaml

from mnist_clip.api import make_config
from mnist_clip.cli import cli
from mnist_clip.config import CLIP_METHODS, OPTIONS, Config
from mnist_clip.options import parse_text
from mnist_clip.plans.cure_table import CURE_NAMES
from mnist_clip.recipe_files import recipe_names
from mnist_clip.runs.schema import epoch_columns_for, metric_columns_for

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.rglob("*.md"))


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def table_after(document: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table after a heading line."""
    lines = document[document.index(heading + "\n"):].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def section(document: str, heading: str) -> str:
    """A heading's text up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    rest = document[document.index(heading + "\n") + len(heading) + 1:]
    end = re.search(rf"^#{{1,{level}}} ", rest, flags=re.M)
    return rest[:end.start()] if end else rest


def option_names(cell: str) -> set[str]:
    """'`--shuffle/--no-shuffle`' -> {'--shuffle', '--no-shuffle'}; '`--train w3,b3`' -> {'--train'}."""
    return set(re.findall(r"--[a-z][a-z0-9-]*", cell))


COMMANDS = text(DOCS / "reference" / "commands.md")
RUN_FOLDER = text(DOCS / "reference" / "run-folder.md")


def train_option_rows() -> dict[str, list[str]]:
    return {name: row for row in table_after(COMMANDS, "## `train` options") for name in option_names(row[0])}


def test_the_train_options_table_has_every_declared_option_with_its_choices_and_default():
    """Read against the declarations of the Config fields: a row per option, each choice named,
    and the default cell read by the options' own text parser (`--beta1`, `--beta2` share a row)."""
    rows, defaults = train_option_rows(), Config()
    for key, option in OPTIONS.items():
        flag = "--" + key.replace("_", "-")
        assert flag in rows, f"the train options table has no row for {flag}"
        row = rows[flag]
        missing = [choice for choice in option.choices if f"`{choice}`" not in " ".join(row[1:])]
        assert not missing, f"the train options table's row for {flag} does not name {missing}"
        flags = [name for name in re.findall(r"--[a-z][a-z0-9-]*", row[0]) if not name.startswith("--no-")]
        shown = re.findall(r"`([^`]*)`", row[1])
        default = getattr(defaults, key)
        if shown:
            assert parse_text(option, shown[flags.index(flag)]) == default, f"{flag}: the table's default is {row[1]}"
        elif option.kind == "bool":
            assert row[1] == ("on" if default else "off"), f"{flag}: the table's default is {row[1]!r}"
        else:
            assert default in (None, ()), f"{flag}: the table gives no default; it is {default!r}"


def test_the_train_options_table_lists_every_option_of_train():
    rows = train_option_rows()
    for param in cli.commands["train"].params:
        if isinstance(param, click.Option) and not param.hidden and "--help" not in param.opts:
            assert any(opt in rows for opt in param.opts), f"the train options table has no row for {param.opts}"


@pytest.mark.parametrize("document", [README, DOCS / "reference" / "commands.md"], ids=lambda path: path.name)
def test_the_commands_tables_name_every_command_and_no_other(document):
    heading = "## Commands" if document == README else "# Commands and options"
    named = {re.match(r"`mnist-clip ([a-z]+)", row[0]).group(1) for row in table_after(text(document), heading)}
    assert named == set(cli.commands)


def test_the_clipping_methods_table_has_every_method():
    methods = [row[0].strip("`") for row in table_after(COMMANDS, "## Clipping methods")]
    assert sorted(methods) == sorted(CLIP_METHODS)


def test_the_recipes_table_names_every_recipe():
    named = " ".join(row[0] for row in table_after(text(DOCS / "reference" / "recipes.md"), "# Recipes"))
    assert [name for name in recipe_names() if f"`{name}.toml`" not in named] == []


def test_the_cures_table_names_every_cure_and_no_other():
    rows = table_after(text(DOCS / "causes-and-cures.md"), "## `mnist-clip cures`")
    assert [row[0].strip("`") for row in rows] == list(CURE_NAMES)


def column_pattern(column: str) -> str:
    """A column as the run-folder page names it: for the first tensor, layer or time step
    (`b3_after` is documented as `w1_after`, `delta2` as `delta1`, `dh17` as `dh1`)."""
    column = re.sub(r"^(?:w|b|gamma|beta|moving_mean|moving_variance)\d+_|^(?:wx|wh|bh|wo|bo)_", "w1_", column)
    return re.sub(r"^(delta|dh|dead_h|saturated_h)\d+$", r"\g<1>1", column)


# one config per kind of column: the reference, saturating units, batch norm, each method with
# extra columns, dirty data, the recurrent net
CONFIGS = [{}, {"activation": "sigmoid"}, {"norm": "batch", "hidden": (64, 64)}, {"clip": "value"},
           {"clip": "agc"}, {"clip": "autoclip"}, {"dirty_fraction": 0.001}, {"model": "rnn"}]


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda overrides: ",".join(map(str, overrides.items())) or "ref")
def test_the_run_folder_page_names_every_column_of_metrics_and_epochs_csv(overrides):
    config = make_config(None, overrides).to_dict()
    documented = set(re.findall(r"`([a-z_0-9]+)`", section(RUN_FOLDER, "# The run folder")))
    missing = sorted({column_pattern(column) for column in (*metric_columns_for(config), *epoch_columns_for(config))}
                     - documented)
    assert missing == [], f"the run folder page does not name {missing}"


def slug(heading: str) -> str:
    """A heading's anchor as Python-Markdown's toc extension (MkDocs) makes it; GitHub's agrees for
    these headings."""
    heading = re.sub(r"`|\*", "", heading)
    value = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", value).strip().lower())


def anchors(path: Path) -> set[str]:
    lines, fenced = [], False
    for line in text(path).splitlines():
        fenced ^= line.startswith("```")
        if not fenced and line.startswith("#"):
            lines.append(slug(line.lstrip("#").strip()))
    return set(lines)


def relative_links(path: Path) -> list[str]:
    body = re.sub(r"^```.*?^```", "", text(path), flags=re.M | re.S)
    body = re.sub(r"`[^`\n]*`", "", body)
    links = re.findall(r"\]\(([^)\s]+)\)", body)
    return [link for link in links if not re.match(r"[a-z]+:", link)]


@pytest.mark.parametrize("document", [README, *PAGES], ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(document):
    broken = []
    for link in relative_links(document):
        target, _, anchor = link.partition("#")
        path = (document.parent / target).resolve() if target else document
        if not path.exists():
            broken.append(link)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(link)
    assert broken == []


def test_every_page_is_in_the_site_navigation_and_every_picture_is_used():
    config = yaml.safe_load(re.sub(r"!!python/\S+", "", text(ROOT / "mkdocs.yml")))

    def pages(nav):
        for item in nav:
            for value in item.values():
                yield from pages(value) if isinstance(value, list) else [value]

    assert sorted(pages(config["nav"])) == sorted(str(page.relative_to(DOCS)) for page in PAGES)
    linked = {(page.parent / link).resolve() for page in [README, *PAGES] for link in relative_links(page)}
    unused = [picture.name for picture in sorted((DOCS / "images").glob("*.png")) if picture.resolve() not in linked]
    assert unused == []


def test_the_picture_script_draws_every_picture_in_the_docs():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_pictures", DOCS / "make_pictures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert sorted(module.PICTURES) == sorted(picture.name for picture in (DOCS / "images").glob("*.png"))


def test_the_readme_stays_a_front_door():
    assert len(text(README).splitlines()) <= 250


def test_the_api_page_documents_every_public_name():
    import mnist_clip

    documented = set(re.findall(r"^::: mnist_clip\.(\w+)$", text(DOCS / "reference" / "python-api.md"), flags=re.M))
    assert sorted(set(mnist_clip.__all__) - documented) == []
