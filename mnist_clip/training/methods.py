"""The clipping methods, declared once: what each compares with its threshold, the columns it
adds to every step, and the words and picture titles it is shown with.

The schema, the run's labels and the pictures read these declarations; the rules themselves,
in TensorFlow, are in clipping.py. No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

Column = Callable[[str], np.ndarray]  # a step column by name


def no_columns(tensors: Sequence[str]) -> tuple[str, ...]:
    return ()


def threshold_column(tensors: Sequence[str]) -> tuple[str, ...]:
    return ("clip_threshold",)


def max_abs_columns(tensors: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"{name}_max_abs" for name in tensors)


def agc_columns(tensors: Sequence[str]) -> tuple[str, ...]:
    return ("clip_threshold", *(f"{name}_units_clipped" for name in tensors), *(f"{name}_agc_ratio" for name in tensors))


def global_norm(column: Column, tensors: Sequence[str], shapes: Mapping[str, Sequence[int]]) -> dict:
    return {"global norm before": column("global_norm_before")}


def tensor_norms(column: Column, tensors: Sequence[str], shapes: Mapping[str, Sequence[int]]) -> dict:
    return {name: column(f"{name}_before") for name in tensors}


def average_norms(column: Column, tensors: Sequence[str], shapes: Mapping[str, Sequence[int]]) -> dict:
    return {name: column(f"{name}_before") / float(np.prod(shapes[name])) for name in tensors}


def largest_elements(column: Column, tensors: Sequence[str], shapes: Mapping[str, Sequence[int]]) -> dict:
    return {name: column(f"{name}_max_abs") for name in tensors}


def unit_ratios(column: Column, tensors: Sequence[str], shapes: Mapping[str, Sequence[int]]) -> dict:
    return {name: column(f"{name}_agc_ratio") for name in tensors}


@dataclass(frozen=True)
class ClipMethod:
    """One clipping method, as the run folder and the pictures see it."""

    name: str
    quantity: str  # what it compares with its threshold, in words
    title: str  # the norms picture's top panel
    compared: Callable[[Column, Sequence[str], Mapping[str, Sequence[int]]], dict]  # {series label: values per step}
    extra_columns: Callable[[Sequence[str]], tuple[str, ...]] = no_columns  # after the step columns every run has
    per_tensor: bool = False  # it can change one tensor's norm against another's
    adaptive: bool = False  # its threshold is not the fixed number clip_norm
    scope: str = ""  # where the threshold applies, after its number: ' (per tensor)'
    threshold_name: str = "threshold"

    def label(self, config: Mapping[str, Any]) -> str:
        """'global_norm 15', 'agc 0.01', 'autoclip p10', 'no clipping'."""
        if self.name == "none":
            return "no clipping"
        if self.name == "autoclip":
            return f"autoclip p{config.get('clip_percentile', 10.0):g}"
        return f"{self.name} {config.get('clip_norm', 0):g}"

    def threshold_label(self, config: Mapping[str, Any]) -> str:
        """The threshold line's legend: 'threshold 15', 'lambda 0.01 (per unit)'."""
        if self.name == "autoclip":
            return f"threshold: percentile {config.get('clip_percentile', 10.0):g} of the global norms so far"
        return f"{self.threshold_name} {config.get('clip_norm', 0):g}{self.scope}"


METHODS: dict[str, ClipMethod] = {
    method.name: method
    for method in (
        ClipMethod("global_norm", "global norm", "Global gradient norm against the threshold", global_norm),
        ClipMethod("norm", "tensor L2 norm", "What clip_by_norm compares: each tensor's L2 norm", tensor_norms,
                   per_tensor=True, scope=" (per tensor)"),
        ClipMethod("value", "gradient |element|", "What clip_by_value compares: each tensor's largest |element|",
                   largest_elements, max_abs_columns, per_tensor=True, scope=" (per element)"),
        ClipMethod("average_norm", "tensor L2 norm / N",
                   "What clip_by_average_norm compares: each tensor's L2 norm / number of elements", average_norms,
                   per_tensor=True, scope=" (per tensor)"),
        ClipMethod("agc", "unit ratio ||g|| / max(||w||, 1e-3)",
                   "What AGC compares: each tensor's largest unit ratio ||g|| / max(||w||, 1e-3)", unit_ratios,
                   agc_columns, per_tensor=True, adaptive=True, scope=" (per unit)", threshold_name="lambda"),
        ClipMethod("autoclip", "global norm", "Global gradient norm and the AutoClip threshold", global_norm,
                   threshold_column, adaptive=True),
        ClipMethod("none", "global norm", "Global gradient norm (no clipping in this run)", global_norm),
    )
}


def clip_label(config: Mapping[str, Any]) -> str:
    """The run's clipping in a few words, from its config (a method this version does not know
    is named with its threshold)."""
    clip = config.get("clip", "?")
    if clip in METHODS:
        return METHODS[clip].label(config)
    return f"{clip} {config.get('clip_norm', 0):g}"


def compared_with_threshold(clip: str, column: Column, tensors: Sequence[str],
                            shapes: Mapping[str, Sequence[int]]) -> tuple[str, dict]:
    """What a clipping method compares with its threshold at each step, from the step
    columns (`column(name)` gives one) and the tensors' shapes: (what it is, {series label: values})."""
    method = METHODS[clip]
    return method.quantity, method.compared(column, tensors, shapes)
