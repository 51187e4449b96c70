"""Seeds: the whole pipeline again with other seeds, through DVC's experiment queue, and the spread.

    skunet seeds queue 42 43 44 45 46   # one queued experiment per seed: dvc exp run --queue -S base.seed=N
    dvc queue start -j 2                # run them (dvc queue status; dvc queue logs seed-43)
    skunet seeds collect                # their metrics -> seeds/<profile>.json; then dvc repro

`collect` reads the finished experiments' metrics from `dvc exp show --json` and writes, per
dataset, model, protocol and metric, the values per seed with mean, standard deviation and range
(:func:`summarize`) into ``seeds/<profile>.json``, a dependency of the compare stage: the next
`dvc repro` shows them in the report beside the single-run numbers. A seed changes the
augmentations, the initial weights, the shuffles and the DropBlock masks; the spread is what a
reproduction can expect from those alone.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from skunet.config import DATASETS, MODELS, PROTOCOLS
from skunet.errors import SkunetError

PREFIX = "seed-"
METRICS = ("f1", "accuracy", "auc")
SEEDS_DIR = Path("seeds")


def _dvc(args: Sequence[str], cwd: Path) -> str:
    result = subprocess.run(["dvc", *args], cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        raise SkunetError(f"`dvc {' '.join(args)}` failed in {cwd} (exit {result.returncode}): {lines[-1]}")
    return result.stdout


def queue(seeds: Sequence[int], cwd: Path) -> list[str]:
    """Queue one experiment per seed (the whole pipeline with `base.seed` set); returns their names."""
    if not seeds or any(seed < 0 for seed in seeds):
        raise SkunetError(f"seeds {list(seeds)}: give one or more non-negative integers")
    names = []
    for seed in dict.fromkeys(seeds):
        name = f"{PREFIX}{seed}"
        _dvc(["exp", "run", "--queue", "-S", f"base.seed={seed}", "-n", name], cwd)
        names.append(name)
    return names


def _finished(shown: Any) -> Iterator[tuple[str, dict]]:
    """(name, data) of every finished experiment in `dvc exp show --json` output: a list of commits,
    each with ``experiments``, each of those with ``name``, ``executor`` (None once finished and
    stored, else its ``state``: queued, running, success, failed) and ``revs`` holding its data."""
    for commit in shown if isinstance(shown, list) else []:
        for experiment in commit.get("experiments") or []:
            executor = experiment.get("executor")
            if executor is not None and executor.get("state") != "success":
                continue  # queued, running or failed: its data are not its results
            for rev in experiment.get("revs") or []:
                if isinstance(rev.get("data"), dict) and not rev.get("error"):
                    yield experiment.get("name") or rev.get("name") or "", rev["data"]


def _value(data: Mapping[str, Any], dataset: str, model: str, protocol: str, metric: str) -> float | None:
    entry = (data.get("metrics") or {}).get(f"metrics/{dataset}/{model}.json") or {}
    value = (entry.get("data") or {}).get(protocol, {}).get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _seed(data: Mapping[str, Any]) -> int | None:
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
    seed = (params.get("base") or {}).get("seed")
    return seed if isinstance(seed, int) else None


def runs_from_exp_show(shown: Any) -> dict[int, dict[str, Any]]:
    """``{seed: data}`` of the finished experiments named ``seed-<n>`` in `dvc exp show --json`
    output."""
    runs = {}
    for name, data in _finished(shown):
        seed = _seed(data)
        if name.startswith(PREFIX) and seed is not None and data.get("metrics"):
            runs[seed] = data
    return runs


def summarize(runs: Mapping[int, Mapping[str, Any]], profile: str) -> dict[str, Any]:
    """Per dataset, model, protocol and metric: the values per seed, mean, sample standard
    deviation (0 for one seed) and range, over the seeds that have that model's metrics."""
    cells: dict[str, Any] = {}
    for dataset in DATASETS:
        for model in MODELS:
            for protocol in PROTOCOLS:
                for metric in METRICS:
                    values = {s: v for s, data in sorted(runs.items())
                              if (v := _value(data, dataset, model, protocol, metric)) is not None}
                    if not values:
                        continue
                    vs = list(values.values())
                    cells.setdefault(dataset, {}).setdefault(model, {}).setdefault(protocol, {})[metric] = {
                        "values": {str(s): v for s, v in values.items()},
                        "mean": statistics.fmean(vs),
                        "sd": statistics.stdev(vs) if len(vs) > 1 else 0.0,
                        "min": min(vs),
                        "max": max(vs),
                    }
    return {"profile": profile, "seeds": sorted(runs), "cells": cells}


def collect(cwd: Path, profile: str) -> Path:
    """Summarize the finished seed experiments of the workspace `cwd` into
    ``seeds/<profile>.json`` (written whole, atomically); returns its path."""
    from skunet.atomic import atomic_file

    # the experiments of this commit only: seeds run on older code or params are not this spread
    runs = runs_from_exp_show(json.loads(_dvc(["exp", "show", "--json"], cwd) or "[]"))
    if not runs:
        raise SkunetError(f"{cwd}: no finished experiment named {PREFIX}<n>; run `skunet seeds queue` and "
                          "`dvc queue start` first (`dvc queue status` shows how they stand)")
    from skunet.baseline import environment

    path = cwd / SEEDS_DIR / f"{profile}.json"
    # where the seeds ran: on another CPU or library set the same seed gives other bits
    summary = {**summarize(runs, profile), "environment": environment()}
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def _spreads(cells: Any, depth: int = 4, where: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, spread) for each cell of a summary: {dataset: {model: {protocol: {metric:
    spread}}}}; a level that is not a mapping is a ValueError."""
    if depth == 0:
        yield where, cells
        return
    if not isinstance(cells, dict):
        raise ValueError(f"'cells{'.' if where else ''}{where}' is not a mapping")
    for key, sub in cells.items():
        yield from _spreads(sub, depth - 1, f"{where}.{key}" if where else str(key))


def load_summary(seeds_dir: Path, profile: str) -> dict[str, Any] | None:
    """``seeds/<profile>.json`` as :func:`collect` wrote it, or None when no seeds were collected
    for this profile."""
    path = seeds_dir / f"{profile}.json"
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
        if summary["profile"] != profile or not isinstance(summary["cells"], dict):
            raise ValueError("not a seeds summary of this profile")
        if not isinstance(summary.get("environment", {}), dict):
            raise ValueError("'environment' is not a mapping")
        for where, spread in _spreads(summary["cells"]):
            if not (isinstance(spread, dict) and isinstance(spread.get("values"), dict)
                    and all(isinstance(spread.get(k), (int, float)) for k in ("mean", "sd", "min", "max"))):
                raise ValueError(f"'cells.{where}' is not a spread over seeds")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SkunetError(f"{path}: not a seeds summary ({err}); run `skunet seeds collect` again") from None
    return summary
