"""The --grid language: a grid's keys and values read and written, and its cells, one run each."""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from mnist_clip.config import CONFIG_KEYS, OPTIONS, Config, format_hidden, normalize_key, unknown_key_message
from mnist_clip.errors import InputError, name as named
from mnist_clip.options import parse_text
from mnist_clip.plans.runner import check_plan_size, check_seeds
from mnist_clip.runs.folder import MAX_NAME_BYTES

DEFAULT_GRID = ("lr=0.01,0.03,0.1,0.3", "clip_norm=none,1,5,15", "input_scale=50,255")
MAX_GRID_KEYS = 4  # x axis, y axis, panel columns, panel rows


@dataclass(frozen=True)
class Cell:
    """One grid point: its settings as given, its full Config and its folder name."""

    settings: tuple[tuple[str, Any], ...]
    config: Config
    seeded: bool = False  # one of several seeds of its grid point: the seed is part of its name

    @property
    def name(self) -> str:
        name = ",".join(f"{key}={format_setting(value)}" for key, value in self.settings)
        return f"{name},seed={self.config.seed}" if self.seeded else name

    @property
    def point(self) -> tuple[str, ...]:
        """The grid values, without the seed."""
        return tuple(format_setting(value) for _, value in self.settings)

    @property
    def folder_name(self) -> str:
        return cell_folder_name(self.name)


def cell_folder_name(name: str) -> str:
    """The cell's name as one safe path component: '/' and '%' percent-encoded, and a
    name too long for the file system cut and made unique by a hash of the whole."""
    safe = name.replace("%", "%25").replace("/", "%2F").replace("\0", "%00")
    if len(safe.encode()) <= MAX_NAME_BYTES:
        return safe
    digest = hashlib.sha1(safe.encode()).hexdigest()[:12]
    return safe.encode()[: MAX_NAME_BYTES - 13].decode(errors="ignore") + "~" + digest


def format_setting(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        if all(isinstance(v, int) for v in value):
            return format_hidden(value).replace(",", "+")
        return "+".join(value)
    if isinstance(value, float):
        short = f"{value:g}"  # 0.01, 15, 1e-05; the exact digits where 6 would change the number
        return short if float(short) == value or not math.isfinite(value) else repr(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_value(key: str, text: str) -> Any:
    """One grid value, read as the Config field declares it (`none` for clip_norm means no
    clipping; a list's items are joined with +)."""
    if key == "clip_norm" and text.strip().lower() == "none":
        return None
    try:
        return parse_text(OPTIONS[key], text, f"{named('grid')} {key}", joiner="+")
    except InputError as err:
        raise InputError(err.template, "grid") from None


def parse_grid(specs: tuple[str, ...] | list[str]) -> list[tuple[str, list]]:
    """["lr=0.01,0.1", "clip_norm=none,15"] -> [("lr", [0.01, 0.1]), ("clip_norm", [None, 15.0])]."""
    grid: list[tuple[str, list]] = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not values.strip():
            raise InputError(f"{named('grid')} {spec!r}: expected KEY=V1,V2,... such as lr=0.01,0.1", "grid")
        key = normalize_key(key)
        if key not in CONFIG_KEYS:
            raise InputError(f"{named('grid')}: {unknown_key_message(key)}", "grid")
        if any(key == existing for existing, _ in grid):
            raise InputError(f"{named('grid')} {key}: given twice; put all its values in one {named('grid')}", "grid")
        parsed = [parse_value(key, value) for value in values.split(",")]
        repeated = [format_setting(v) for i, v in enumerate(parsed) if v in parsed[:i]]
        if repeated:
            raise InputError(f"{named('grid')} {key}: the value {repeated[0]} is given twice (values are compared after "
                             "reading)", "grid")
        grid.append((key, parsed))
    if len(grid) > MAX_GRID_KEYS:
        raise InputError(f"{named('grid')}: at most {MAX_GRID_KEYS} keys (x, y, panel columns, panel rows); got {len(grid)}",
                         "grid")
    return grid


def grid_specs(grid: Mapping | Iterable[str] | str | None) -> list[str]:
    """A grid as --grid strings: {"lr": [0.01, 0.1], "clip_norm": [None, 15]} or ["lr=0.01,0.1"]."""
    from mnist_clip.arguments import shown

    if grid is None:
        return list(DEFAULT_GRID)
    if isinstance(grid, str):
        grid = [grid]
    if isinstance(grid, Mapping):
        specs = []
        for key, values in grid.items():
            if not isinstance(key, str):
                raise InputError(f"{named('grid')}: its keys are config keys such as 'lr' (got {shown(key)})", "grid")
            if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
                raise InputError(f"{named('grid')} {key}: give a list of values such as [0.01, 0.1] "
                                 f"(got {shown(values)})", "grid")
            values = [tuple(v) if isinstance(v, list) else v for v in values]
            if not values:
                raise InputError(f"{named('grid')} {key}: no values; give a list such as [0.01, 0.1]", "grid")
            specs.append(f"{key}=" + ",".join(format_setting(v) for v in values))
    elif isinstance(grid, Iterable) and all(isinstance(spec, str) for spec in grid):
        specs = list(grid)
    else:
        raise InputError(f"{named('grid')}: give a dict such as {{'lr': [0.01, 0.1]}} or strings such as 'lr=0.01,0.1' "
                         f"(got {shown(grid)})", "grid")
    if not specs:
        raise InputError(f"{named('grid')}: empty; give at least one key and its values, such as {{'lr': [0.01, 0.1]}}, "
                         "or leave grid out (None) for the default grid", "grid")
    return specs


def make_cells(base: Config, grid: list[tuple[str, list]], seeds: int = 1) -> list[Cell]:
    """Every combination of the grid's values over the base config, for each of `seeds` seeds
    (all validated up front)."""
    points = math.prod(len(values) for _, values in grid)
    check_plan_size(points, "grid", " x ".join(f"{key} ({len(values)})" for key, values in grid) or "one cell")
    check_seeds(base, seeds, points)
    if seeds > 1 and any(key == "seed" for key, _ in grid):
        raise InputError(f"{named('seeds')}: give either {named('seeds')} or a grid over seed, not both", "seeds")
    cells = []
    for combination in itertools.product(*(values for _, values in grid)):
        settings = tuple((key, value) for (key, _), value in zip(grid, combination))
        changes = {}
        for key, value in settings:
            if key == "clip_norm" and value is None:
                changes["clip"] = "none"
            else:
                changes[key] = value
        try:
            config = base.replace(**changes)
        except InputError as err:  # named as the grid gave it: --grid lr=inf, not --lr
            given = dict(settings)
            key = err.key if err.key in given else "clip_norm" if err.key == "clip" and "clip_norm" in given else None
            if key is None:
                raise
            spelled = f"{named('grid')} {key}={format_setting(given[key])}"
            setting = named(err.key, given[key])  # "beta2=0.99999999 is 1.0 in float32" names the setting
            token = setting if key == err.key and setting in err.template else named(err.key)
            raise InputError(err.template.replace(token, spelled, 1), "grid", err.language) from None
        for offset in range(seeds):
            cells.append(Cell(settings, config.replace(seed=base.seed + offset), seeded=seeds > 1))
    return cells
