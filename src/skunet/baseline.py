"""The smoke baseline (``baselines/smoke.yaml``): what ``skunet check --baseline`` holds a run to.

A smoke run is bit-reproducible for a given seed, machine and library set (two runs write the same
bytes), so a baseline records the environment it was made in and every number of every model's
metrics file, both protocols, at full precision (``exact``). Where the environment of the check
matches, each of those numbers must come back exactly: a bug that moves any metric at all (a
forward pass left in training mode, a changed threshold) fails. Where it does not (another CPU,
another library version), the run is held to the rounded paper-protocol values within
``tolerances``, the spread over seeds.

Layout::

    tolerances: {f1: .., accuracy: .., auc: ..}
    drive: {unet: {f1: .., accuracy: .., auc: ..}, ...}     # rounded, protocol `paper`
    chase: {...}
    environment: {python: .., torch: .., ..., cpu: .., threads: ..}
    params: {profile: smoke, md5: ..}   # the workspace's params.yaml the run was made with
    exact: {drive: {unet: {paper: {f1: .., tp: .., ...}, fov: {...}}, ...}, chase: {...}}
    also:                     # the same run (code, seed) made in other environments
    - {environment: {...}, exact: {...}}

``skunet record-baseline --workdir DIR`` rewrites the values, ``environment`` and ``exact`` from a
smoke workspace and keeps the tolerances, so a re-recording shows in the diff number by number (it
drops ``also``: those were numbers of the code before). ``--add-environment`` adds this
environment's numbers to ``also`` instead (another CPU, where the same code gives other bits), so
that CI there holds every number exactly too. Only a smoke workspace whose metrics are the ones
its dvc.lock records, and up to date, is recorded; a workspace of other parameters (another
profile, an edited params.yaml: ``params.md5`` differs) is not held to the exact numbers, and says
so.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import platform
from pathlib import Path
from typing import Any, Mapping

import yaml

from skunet.atomic import atomic_file
from skunet.compare import (REFERENCE_METRICS, ComparisonInputError, _is_number, load_reproduced, parse_reference,
                            read_yaml_file)
from skunet.config import DATASETS, MODELS

# The rounded values the tolerance gate compares (protocol `paper`).
GATED_METRICS = ("f1", "accuracy", "auc")
# Beside the libraries that draw the augmentations (skunet.data.augment.library_versions), those
# whose version can change a smoke run's numbers: training, the derived FOV masks, image decoding.
LIBRARIES = {"torch": "torch", "scipy": "scipy", "pillow": "PIL"}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict[str, Any]:
    """What a smoke run's numbers depend on besides the code: Python, the libraries above, the
    processor and the number of threads torch uses."""
    import torch

    from skunet.data.augment import library_versions

    env: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                           **library_versions()}
    for name, module in LIBRARIES.items():
        env[name] = str(importlib.import_module(module).__version__)
    env["cpu"] = _cpu_model()
    env["threads"] = torch.get_num_threads()
    return env


def params_record(params: Mapping[str, Any]) -> dict[str, str]:
    """What a baseline records of the parameters a run was made with: the profile and the md5 of
    params.yaml's values (kinds included: 0 and 0.0 differ, as they do to DVC)."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return {"profile": str(params["base"]["profile"]), "md5": hashlib.md5(text.encode()).hexdigest()}


def load_baseline(path: Path | str) -> dict[str, Any]:
    """``{"reference": {dataset: {model: {metric: value}}}, "tolerances": {metric: value},
    "environment": {...} or None, "exact": {dataset: {model: {protocol: {name: number}}}} or None,
    "also": [{"environment": {...}, "exact": {...}}, ...]}``.
    """
    path = Path(path)
    data = read_yaml_file(path)
    reference = parse_reference(data, path)
    tolerances = data.get("tolerances")
    if not isinstance(tolerances, dict) or not tolerances:
        raise ComparisonInputError(
            f"{path}: key 'tolerances' must map metric names to non-negative numbers"
        )
    for metric, tol in tolerances.items():
        if metric not in REFERENCE_METRICS:
            raise ComparisonInputError(f"{path}: unknown metric 'tolerances.{metric}' (allowed: "
                                       f"{', '.join(REFERENCE_METRICS)}); fix the spelling")
        if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not math.isfinite(tol) or tol < 0:
            raise ComparisonInputError(
                f"{path}: key 'tolerances.{metric}' must be a non-negative number, got {tol!r}"
            )
    environment_, exact = data.get("environment"), data.get("exact")
    if (environment_ is None) != (exact is None) or not all(
        v is None or isinstance(v, dict) for v in (environment_, exact)
    ):
        raise ComparisonInputError(
            f"{path}: keys 'environment' and 'exact' must both be mappings, or both absent;"
            " re-record with `skunet record-baseline`"
        )
    also = data.get("also", [])
    if not isinstance(also, list) or not all(isinstance(r, dict) and isinstance(r.get("environment"), dict)
                                             and isinstance(r.get("exact"), dict) for r in also):
        raise ComparisonInputError(f"{path}: key 'also' must be a list of mappings with 'environment' and 'exact';"
                                   " re-record with `skunet record-baseline --add-environment`")
    params = data.get("params")
    if params is not None and not (isinstance(params, dict) and set(params) == {"profile", "md5"}
                                   and all(isinstance(v, str) for v in params.values())):
        raise ComparisonInputError(f"{path}: key 'params' must map 'profile' and 'md5' to strings;"
                                   " re-record with `skunet record-baseline`")
    for where, recorded in [("exact", exact), *((f"also[{i}].exact", r["exact"]) for i, r in enumerate(also))]:
        problem = None if recorded is None else _exact_problem(recorded, where)
        if problem:
            raise ComparisonInputError(f"{path}: {problem}; re-record with `skunet record-baseline`")
    return {
        "reference": reference,
        "tolerances": {str(k): float(v) for k, v in tolerances.items()},
        "environment": environment_,
        "exact": exact,
        "also": also,
        "params": params,
    }


def _exact_problem(exact: Mapping[str, Any], where: str) -> str | None:
    """What keeps `exact` from holding numbers of every model on both datasets under each
    protocol (finite numbers only), or None."""
    for dataset in DATASETS:
        for model in MODELS:
            protocols = exact.get(dataset, {}).get(model) if isinstance(exact.get(dataset), dict) else None
            if not isinstance(protocols, dict) or not protocols:
                return f"key '{where}.{dataset}.{model}' must map each protocol to its numbers"
            for protocol, numbers in protocols.items():
                if not isinstance(numbers, dict) or not numbers:
                    return f"key '{where}.{dataset}.{model}.{protocol}' must map names to numbers"
                for name, value in numbers.items():
                    if not _is_number(value):
                        return f"key '{where}.{dataset}.{model}.{protocol}.{name}' must be a finite number, got {value!r}"
    return None


def environment_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``name: recorded -> current`` for each entry that differs (or exists on one side only); a
    value that reads the same but is of another type (threads "2", a string) is quoted."""
    lines = []
    for key in sorted({*recorded, *current}):
        was, now = recorded.get(key, "-"), current.get(key, "-")
        if was != now:
            show = repr if str(was) == str(now) else str
            lines.append(f"{key}: {show(was)} recorded, {show(now)} here")
    return lines


def _numbers(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Every number of a nested mapping, by dotted path."""
    if isinstance(tree, Mapping):
        out: dict[str, Any] = {}
        for key, sub in tree.items():
            out.update(_numbers(sub, f"{prefix}{key}."))
        return out
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {prefix.rstrip("."): tree}
    return {}


def exact_mismatches(exact: Mapping[str, Any], reproduced: Mapping[str, Any]) -> tuple[int, list[str]]:
    """(numbers held, one line per recorded number that did not come back exactly)."""
    recorded, found = _numbers(exact), _numbers(reproduced)
    lines = []
    for key, value in recorded.items():
        if key not in found:
            lines.append(f"{key}: {value!r} recorded, missing here")
        elif found[key] != value:
            lines.append(f"{key}: {value!r} recorded, {found[key]!r} here")
    return len(recorded), lines


def exact_check(baseline: Mapping[str, Any], metrics_dir: Path, allow_missing: bool = False,
                params: Mapping[str, Any] | None = None) -> tuple[int, str]:
    """Hold the metrics files to the baseline's exact values where the environment matches; with
    `allow_missing` (a partial run), those of the models that have a metrics file. `params`: the
    workspace's parameters; where the baseline records others (another profile, an edited
    params.yaml), the numbers cannot repeat: 1, and a line that says so.

    Returns ``(exit_code, text)``; without exact values, or in another environment, 0 and a
    line saying that only the tolerances apply.
    """
    if baseline["exact"] is None:
        return 0, "the baseline records no exact values: held to the tolerances only\n"
    made_with = None if params is None else params_record(params)
    if made_with and baseline.get("params") and made_with != baseline["params"]:
        here, there = made_with["profile"], baseline["params"]["profile"]
        which = (f"profile {here}, not the {there} profile it records" if here != there
                 else f"the {there} profile, but params.yaml differs from the one it records")
        return 1, (f"this workspace's parameters are not the baseline's ({which}), so its numbers cannot repeat:"
                   " lay it out again with `skunet smoke --workdir DIR`, or, if the change is intended,"
                   " re-record with `skunet record-baseline`\n")
    here = environment()
    records = [{"environment": baseline["environment"], "exact": baseline["exact"]}, *baseline.get("also", [])]
    matching = next((r for r in records if not environment_differences(r["environment"], here)), None)
    if matching is None:
        others = len(records) - 1
        return 0, (
            "environment differs from the baseline's (" + "; ".join(environment_differences(records[0]["environment"], here))
            + (f"; and from the {others} other{'s' if others > 1 else ''} it records" if others else "")
            + "): held to the tolerances (the spread over seeds) only\n"
        )
    same = "the baseline" if matching is records[0] else f"one the baseline also records ({here['cpu']})"
    reproduced, exact = load_reproduced(metrics_dir), matching["exact"]
    if allow_missing:
        exact = {ds: {m: v for m, v in models.items() if m in reproduced.get(ds, {})} for ds, models in exact.items()}
    held, mismatches = exact_mismatches(exact, reproduced)
    if mismatches:
        return 1, (
            f"same environment as {same}, but {len(mismatches)} of {held} recorded numbers"
            " changed (a smoke run repeats bit for bit here; if the change is intended, re-record"
            " with `skunet record-baseline`):\n" + "".join(f"  {line}\n" for line in mismatches)
        )
    return 0, f"same environment as {same}: all {held} recorded numbers repeated exactly\n"


def baseline_text(header: list[str], tolerances: Mapping[str, float], runs: Mapping[str, Any],
                  env: Mapping[str, Any], also: list[dict[str, Any]] | None = None,
                  params: Mapping[str, str] | None = None) -> str:
    """The baseline file: `header` (comment lines), tolerances, rounded values, environment, the
    parameters' record and every number of `runs` (``{dataset: {model: metrics file content}}``),
    then `also`."""
    lines = [*header, "tolerances: {" + ", ".join(f"{k}: {v}" for k, v in tolerances.items()) + "}"]
    for dataset in DATASETS:
        lines.append(f"{dataset}:")
        for model in MODELS:
            values = runs[dataset][model]["paper"]
            lines.append(f"  {model + ':':16s}{{" + ", ".join(f"{k}: {values[k]:.4f}" for k in GATED_METRICS) + "}")
    body = {"environment": dict(env), **({"params": dict(params)} if params else {}), "exact": _exact_of(runs),
            **({"also": also} if also else {})}
    return "\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False, width=100)


def _exact_of(runs: Mapping[str, Any]) -> dict[str, Any]:
    """Every number of each model's metrics file (`runs`, or an `exact` section), as `exact` holds them."""
    return {ds: {m: _only_numbers(runs[ds][m]) for m in MODELS} for ds in DATASETS}


def _header(path: Path) -> list[str]:
    """The baseline file's comment lines, kept when it is written again."""
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]


def _only_numbers(tree: Mapping[str, Any]) -> dict[str, Any]:
    """`tree` with its strings, lists and other non-numbers left out."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out[key] = _only_numbers(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    return out


def _whole_run(metrics_dir: Path) -> dict[str, Any]:
    """The six metrics files of a smoke workspace, each gated metric a number, every number finite."""
    gated = {dataset: {model: dict.fromkeys(GATED_METRICS) for model in MODELS} for dataset in DATASETS}
    runs = load_reproduced(metrics_dir, gated)  # each gated metric must be a number
    missing = [f"{metrics_dir / ds / m}.json" for ds in DATASETS for m in MODELS if m not in runs.get(ds, {})]
    if missing:
        raise ComparisonInputError(f"{missing[0]}: missing; run the whole smoke pipeline before recording")
    bad = next((k for k, v in _numbers(runs).items() if not math.isfinite(v)), None)
    if bad:
        dataset, model, key = bad.split(".", 2)
        raise ComparisonInputError(f"{metrics_dir / dataset / model}.json: '{key}' is not a finite number; run its"
                                   f" evaluate stage again (dvc repro -f -s evaluate@{dataset}-{model})")
    return runs


def _smoke_params(params: Mapping[str, Any] | None, params_path: str) -> dict[str, str] | None:
    """The record of a smoke workspace's parameters; a workspace of another profile is refused."""
    if params is None:
        return None
    if params["base"]["profile"] != "smoke":
        raise ComparisonInputError(f"{params_path}: base.profile is {params['base']['profile']}, and a smoke baseline"
                                   " records a smoke run: record from a workspace `skunet smoke --workdir DIR` made")
    return params_record(params)


def record(path: Path, metrics_dir: Path, params: Mapping[str, Any] | None = None,
           params_path: str = "params.yaml") -> str:
    """Rewrite the baseline at `path` from the metrics files in `metrics_dir`, in this environment,
    keeping its comment header and tolerances (and dropping `also`: numbers of the code before).
    `params`: the workspace's parameters (read from `params_path`), which must be a smoke
    profile's; recorded. Returns a one-line summary."""
    old = load_baseline(path)
    made_with = _smoke_params(params, params_path)
    runs = _whole_run(metrics_dir)
    env = environment()
    with atomic_file(path) as tmp:
        tmp.write_text(baseline_text(_header(path), old["tolerances"], runs, env, params=made_with))
    dropped = len(old["also"])
    return (f"{path}: recorded {len(_numbers(runs))} numbers from {metrics_dir} ({env['cpu']}, {env['threads']} threads)"
            + (f"; dropped the {dropped} other environment{'s' if dropped > 1 else ''} it recorded (record them there"
               " again with --add-environment)" if dropped else ""))


def add_environment(path: Path, metrics_dir: Path, params: Mapping[str, Any] | None = None,
                    params_path: str = "params.yaml") -> str:
    """Add (or replace) this environment's numbers of the same smoke run in the baseline's
    `also`, leaving the rest as it is. `params`: the workspace's, which must be those the
    baseline records (the same run). Returns a one-line summary."""
    old = load_baseline(path)
    if old["exact"] is None:
        raise ComparisonInputError(f"{path}: records no exact values yet; record it with `skunet record-baseline`")
    made_with = _smoke_params(params, params_path)
    if made_with and old["params"] and made_with != old["params"]:
        raise ComparisonInputError(f"{params_path}: not the parameters {path} records (the same run in another"
                                   " environment is what --add-environment adds): lay the workspace out again with"
                                   " `skunet smoke --workdir DIR`, or re-record the whole baseline without"
                                   " --add-environment")
    env = environment()
    if not environment_differences(old["environment"], env):
        raise ComparisonInputError(f"{path}: this environment is the baseline's own; re-record it with"
                                   " `skunet record-baseline` (without --add-environment)")
    runs = _whole_run(metrics_dir)
    exact = _exact_of(runs)
    before = next((r for r in old["also"] if not environment_differences(r["environment"], env)), None)
    if before is not None and before["exact"] == exact:
        return (f"{path}: this environment ({env['cpu']}, {env['threads']} threads) is recorded already, with these"
                " very numbers: nothing to change")
    also = [r for r in old["also"] if environment_differences(r["environment"], env)]
    also.append({"environment": env, "exact": exact})
    with atomic_file(path) as tmp:
        tmp.write_text(baseline_text(_header(path), old["tolerances"], old["exact"], old["environment"], also,
                                     params=old["params"]))
    did = "replaced the" if before is not None else "added"
    return (f"{path}: {did} {len(_numbers(runs))} numbers from {metrics_dir} for this environment ({env['cpu']},"
            f" {env['threads']} threads); {len(also) + 1} environments recorded")
