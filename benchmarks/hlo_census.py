"""Count what an optimized XLA:CPU HLO module runs per training step: the kernels (top-level
instructions that do work) of its while loop's body and of the branches it calls, by opcode.

    python benchmarks/hlo_census.py MODULE.txt [MODULE.txt ...]

A module is the text of TensorFlow's `XLA_FLAGS="--xla_dump_to=DIR --xla_dump_hlo_as_text"`
dump (*.cpu_after_optimizations.txt) or of JAX's `jit(f).lower(...).compile().as_text()`.
XLA:CPU runs each such instruction as one thunk: on a step of ~1 ms, their number and the
copies among them are what a program pays beyond its arithmetic.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

HEADER = re.compile(r"^(ENTRY )?%?([\w.\-]+) .*\{\s*$")
INSTRUCTION = re.compile(r"^\s*(ROOT )?%?([\w.\-]+) = (.+?) ([\w\-]+)\((.*)$")
FREE = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "after-all", "partition-id"}
CALLS = re.compile(r"(?:body|condition|branch_computations|true_computation|false_computation|to_apply|calls)="
                   r"(\{[^}]*\}|%?[\w.\-]+)")


def computations(text: str) -> dict[str, list[tuple[str, str, str]]]:
    """name -> [(instruction name, opcode, the rest of the line)], and which one is ENTRY."""
    result, current, entry = {}, None, None
    for line in text.splitlines():
        header = HEADER.match(line)
        if header and "=" not in line.split("(")[0]:
            current = header.group(2)
            result[current] = []
            if header.group(1):
                entry = current
            continue
        if line.strip() == "}":
            current = None
            continue
        match = INSTRUCTION.match(line)
        if current is not None and match:
            result[current].append((match.group(2), match.group(4), match.group(5)))
    result["__entry__"] = entry
    return result


def called(rest: str) -> list[str]:
    names = []
    for group in CALLS.findall(rest):
        names += [name.strip().lstrip("%") for name in group.strip("{}").split(",") if name.strip()]
    return names


def census(text: str) -> dict:
    comps = computations(text)
    entry = comps.pop("__entry__")
    loops = [(name, rest) for name, op, rest in comps[entry] if op == "while"]
    report = {"entry kernels": Counter(op for _, op, _ in comps[entry] if op not in FREE), "loops": []}
    for _, rest in loops:
        body = re.search(r"body=%?([\w.\-]+)", rest).group(1)
        kernels, nested = Counter(), []
        for name, op, inner in comps[body]:
            if op in FREE:
                continue
            kernels[op] += 1
            if op in ("conditional", "while", "call"):
                for callee in called(inner):
                    branch = Counter(o for _, o, _ in comps.get(callee, []) if o not in FREE)
                    nested.append((op, callee, branch))
        report["loops"].append({"body": body, "kernels": kernels, "nested": nested})
    return report


def describe(report: dict) -> str:
    lines = [f"  entry: {sum(report['entry kernels'].values())} kernels {dict(report['entry kernels'])}"]
    for loop in report["loops"]:
        kernels = loop["kernels"]
        lines.append(f"  while body {loop['body']}: {sum(kernels.values())} kernels, "
                     + ", ".join(f"{op} {n}" for op, n in kernels.most_common()))
        for op, callee, branch in loop["nested"]:
            lines.append(f"    {op} -> {callee}: {sum(branch.values())} kernels, "
                         + ", ".join(f"{o} {n}" for o, n in branch.most_common()))
    return "\n".join(lines)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(path)
        print(describe(census(open(path).read())))
