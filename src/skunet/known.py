"""Known deviations: cells of the committed paper-profile run that are out of tolerance, reviewed,
and recorded with the reproduced value they were reviewed at and why.

A reproduction that misses a published number has found something; it has not broken. Gated
strictly, such a run could never be committed beside its code, and a gate that is always red
is one nobody reads. So `skunet check --known FILE` (the CI gate on the committed run) works like
a strict expected failure: a failing cell listed in FILE at the value the run has does not fail
the check, and everything else does — a failing cell not listed, a listed cell whose reproduced
value is no longer the one reviewed (a new run: review it again), and a listed cell that now
passes or has no result (the list is out of date). The tables, the report and the README say
FAIL for these cells all the same; only the gate's exit status reads the list.

The file::

    protocol: paper
    cells:
      drive/unet/f1:
        reproduced: 0.7866      # as the comparison prints it (4 decimals)
        reason: one line: what is known about the gap
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from skunet.config import PROTOCOLS, read_yaml
from skunet.errors import SkunetError

# The comparison prints 4 decimals: a listed value matches a reproduced one that prints as it does.
PRINTED = 0.5e-4 + 1e-12


def load_known(path: Path) -> dict[str, Any]:
    """The known-deviations file at `path`, checked: ``{"protocol": str, "cells": {"ds/model/metric":
    {"reproduced": float, "reason": str}}}``; anything else is one line naming the file and key."""
    data = read_yaml(path, missing="not found; give the known-deviations file (published/known_deviations.yaml)")
    if not isinstance(data, dict) or set(data) != {"protocol", "cells"}:
        raise SkunetError(f"{path}: expected the keys `protocol` and `cells` alone (see skunet.known)")
    if data["protocol"] not in PROTOCOLS:
        raise SkunetError(f"{path}: protocol: {data['protocol']!r} is not one of {', '.join(PROTOCOLS)}")
    cells = data["cells"] or {}
    if not isinstance(cells, dict):
        raise SkunetError(f"{path}: cells: expected a mapping of dataset/model/metric to reproduced and reason")
    for name, entry in cells.items():
        if not isinstance(name, str) or name.count("/") != 2:
            raise SkunetError(f"{path}: cells: {name!r} is not dataset/model/metric (e.g. drive/unet/f1)")
        if not isinstance(entry, dict) or set(entry) != {"reproduced", "reason"}:
            raise SkunetError(f"{path}: cells.{name}: expected `reproduced` (the value reviewed) and `reason` alone")
        value = entry["reproduced"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SkunetError(f"{path}: cells.{name}.reproduced: {value!r} is not a number")
        if not isinstance(entry["reason"], str) or not entry["reason"].strip():
            raise SkunetError(f"{path}: cells.{name}.reason: say in a line what is known about this gap")
    return {"protocol": data["protocol"], "cells": cells}


def judge(result: Mapping[str, Any], known: Mapping[str, Any], path: Path) -> tuple[bool, list[str]]:
    """Whether the comparison `result` (:func:`skunet.compare.compare`) fails only in cells that
    `known` lists at their reproduced values, and a line for each failing or listed cell.

    Missing cells are left to the caller (``--allow-missing``), unless a listed cell is one of
    them: a listed cell must have its result."""
    if known["protocol"] != result["protocol"]:
        raise SkunetError(f"{path}: lists protocol `{known['protocol']}` cells; the check compares protocol"
                          f" `{result['protocol']}`: give --protocol {known['protocol']} or another file")
    cells = {f"{dataset}/{model}/{metric}": cell
             for dataset, block in result["datasets"].items()
             for model, metrics in block["cells"].items()
             for metric, cell in metrics.items()}
    ok, lines = True, []
    for name, cell in cells.items():
        entry = known["cells"].get(name)
        if cell["missing"] or cell["pass"]:
            continue
        if entry is None:
            ok = False
            lines.append(f"{name}: FAIL ({cell['reproduced']:.4f}, delta {cell['delta']:+.4f}), not in {path}:"
                         " a new gap; look into it before listing it")
        elif abs(cell["reproduced"] - entry["reproduced"]) > PRINTED:
            ok = False
            lines.append(f"{name}: FAIL at {cell['reproduced']:.4f}, but {path} lists it at"
                         f" {entry['reproduced']:.4f}: a new run; review its gap and update the entry")
        else:
            lines.append(f"{name}: FAIL ({cell['reproduced']:.4f}, delta {cell['delta']:+.4f}), known: {entry['reason']}")
    for name, entry in known["cells"].items():
        cell = cells.get(name)
        if cell is None:
            ok = False
            lines.append(f"{name}: listed in {path}, but the comparison has no such cell: fix the name or remove it")
        elif cell["missing"]:
            ok = False
            lines.append(f"{name}: listed in {path} at {entry['reproduced']:.4f}, but has no result now"
                         f" (missing {cell['missing']}): remove the entry, or bring its result back")
        elif cell["pass"]:
            ok = False
            lines.append(f"{name}: listed in {path}, but passes now ({cell['reproduced']:.4f}): remove the entry")
    return ok, lines
