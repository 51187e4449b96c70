"""Reproduced metrics against the published tables: cell by cell, with tolerances.

The logic (:func:`compare`, :func:`format_table`) is pure; the small file
readers (:func:`load_reference`, :func:`load_reproduced`) and :func:`run_check`, which backs
``skunet check``, are kept apart from it.

A *cell* is one (dataset, model, metric). It is compared when both the reproduced and the published
value exist, and passes when ``|reproduced - published| <= tolerance``. A cell that exists on one
side only is reported as missing, never counted as a pass.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ruamel.yaml.error import YAMLError

from skunet.config import DATASETS, MODELS, PROTOCOLS, parse_yaml, yaml_problem
from skunet.errors import SkunetError, reason
from skunet.metrics import SCORE_NAMES

# The paper's F1 ranking (Tables 3 and 4), best first: each model beats the one it builds on.
PAPER_RANKING = MODELS[::-1]
RANKING_METRIC = "f1"
# Deltas are differences of decimals that binary floats cannot hold exactly
# (0.8491 - 0.8291 = 0.020000000000000018): a delta equal to the tolerance on paper must pass.
SLACK = 1e-12
# Top-level keys of a reference file that are not {dataset: {model: {metric: value}}}: the other
# methods of the paper's Tables 5/6 (context only), and a baseline's tolerances, environment and
# exact values, and those of the other environments it records (skunet.baseline).
CONTEXT_KEYS = ("others", "tolerances", "environment", "params", "exact", "also")
# The metrics a reference may hold: the evaluate stage's scores.
REFERENCE_METRICS = (*SCORE_NAMES, "auc")


class ComparisonInputError(SkunetError, ValueError):
    """A reference or metrics file (or mapping) that does not have the expected layout."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------------------------------------
# Reading files


def load_reference(path: Path | str) -> dict[str, dict[str, dict[str, float]]]:
    """Published (or baseline) values: ``{dataset: {model: {metric: value}}}``.

    Reads ``published/paper.yaml`` or any YAML/JSON file of the same layout (a baseline). The
    top-level keys of ``CONTEXT_KEYS`` (other methods, a baseline's own settings) are skipped.

    Raises
    ------
    ComparisonInputError (a ValueError)
        With one line naming the file and the offending key when the layout is wrong.
    """
    path = Path(path)
    return parse_reference(read_yaml_file(path), path)


def parse_reference(data: Any, path: Path, models: Sequence[str] | None = MODELS
                    ) -> dict[str, dict[str, dict[str, float]]]:
    """The checks of :func:`load_reference` on the already parsed contents of `path`: the
    project's datasets, `models` (None: any method, as in ``others``), the evaluate stage's
    metric names, and scores in [0, 1)."""
    if not isinstance(data, dict) or not data:
        raise ComparisonInputError(
            f"{path}: expected a mapping {{dataset: {{model: {{metric: value}}}}}}"
        )
    reference: dict[str, dict[str, dict[str, float]]] = {}
    for dataset, block in data.items():
        if dataset in CONTEXT_KEYS:
            continue
        if dataset not in DATASETS:
            raise ComparisonInputError(f"{path}: unknown dataset '{dataset}' (allowed: {', '.join(DATASETS)});"
                                       " fix the spelling")
        if not isinstance(block, dict) or not block:
            raise ComparisonInputError(f"{path}: key '{dataset}' must map model names to metrics")
        reference[str(dataset)] = {}
        for model, metrics in block.items():
            key = f"{dataset}.{model}"
            if models is not None and model not in models:
                raise ComparisonInputError(f"{path}: unknown model '{key}' (allowed: {', '.join(models)});"
                                           " fix the spelling")
            if not isinstance(metrics, dict) or not metrics:
                raise ComparisonInputError(f"{path}: key '{key}' must map metric names to numbers")
            for metric, value in metrics.items():
                if metric not in REFERENCE_METRICS:
                    raise ComparisonInputError(f"{path}: unknown metric '{key}.{metric}' (allowed: "
                                               f"{', '.join(REFERENCE_METRICS)}); fix the spelling")
                if not _is_number(value) or not 0 <= value < 1:  # a perfect 1 is no score of these test sets
                    raise ComparisonInputError(
                        f"{path}: key '{key}.{metric}' must be a number in [0, 1) (a fraction below 1), got {value!r}"
                    )
            reference[str(dataset)][str(model)] = {str(k): float(v) for k, v in metrics.items()}
    return reference


def check_complete(reference: Mapping[str, Mapping[str, Mapping[str, float]]], tolerances: Mapping[str, Any],
                   path: Path) -> None:
    """Every model of `reference` has a value for each metric with a tolerance: one left out would
    drop its cell from the check without a word."""
    for dataset, block in reference.items():
        for model, metrics in block.items():
            absent = [m for m in tolerances if m not in metrics]
            if absent:
                raise ComparisonInputError(f"{path}: key '{dataset}.{model}' has no '{absent[0]}'; give every model"
                                           f" a value for each metric with a tolerance ({', '.join(tolerances)})")


def read_yaml_file(path: Path) -> Any:
    """A reference file's contents (:func:`skunet.config.parse_yaml`); unreadable or malformed:
    one line naming it."""
    try:
        return parse_yaml(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ComparisonInputError(f"{path}: cannot read the reference file ({err.strerror or reason(err)})") from None
    except UnicodeDecodeError:  # an image or an archive given for the YAML file
        raise ComparisonInputError(f"{path}: not UTF-8 text; give the reference YAML file") from None
    except YAMLError as err:
        raise ComparisonInputError(f"{path}: not valid YAML ({yaml_problem(err)}); fix it there") from None


def _check_metrics(content: Mapping[str, Any], metrics: Iterable[str], path: Path, stage: str) -> None:
    """A metrics file holds a number for each of `metrics` under each protocol it has: a key left
    out or null would read as a result not yet there. (A protocol left out is named where it is
    compared.)"""
    for protocol in PROTOCOLS:
        scores = content.get(protocol)
        if protocol in content and not isinstance(scores, Mapping):
            raise ComparisonInputError(f"{path}: '{protocol}' is not an object of metrics (got {scores!r}); re-run"
                                       f" `dvc repro -f -s {stage}` to write it again")
        if not isinstance(scores, Mapping):
            continue
        for metric in metrics:
            value = scores.get(metric)
            if not _is_number(value):
                raise ComparisonInputError(f"{path}: no number at '{protocol}.{metric}' (got {value!r}); re-run"
                                           f" `dvc repro -f -s {stage}` to write it again")
        for metric in REFERENCE_METRICS:  # a score is a fraction: anything else is a damaged file
            value = scores.get(metric)
            if _is_number(value) and not 0 <= value <= 1:
                raise ComparisonInputError(f"{path}: '{protocol}.{metric}' is {value!r}, not a score in [0, 1]; re-run"
                                           f" `dvc repro -f -s {stage}` to write it again")


def load_reproduced(
    metrics_dir: Path | str, reference: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per-model metrics files ``metrics_dir/<dataset>/<model>.json`` that exist.

    Datasets and models looked for: the project's (``drive``, ``chase``; ``unet``,
    ``unet_dropblock``, ``skunet``) and any named in `reference`.

    Returns ``{dataset: {model: content}}``, content being ``{"paper": {...}, "fov": {...}}``.
    """
    metrics_dir = Path(metrics_dir)
    reference = reference or {}
    datasets = list(dict.fromkeys([*DATASETS, *reference]))
    reproduced: dict[str, dict[str, dict[str, Any]]] = {}
    for dataset in datasets:
        models = list(dict.fromkeys([*MODELS, *reference.get(dataset, {})]))
        for model in models:
            path = metrics_dir / dataset / f"{model}.json"
            if not path.is_file():
                continue
            try:
                content = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise ComparisonInputError(f"{path}: not readable as JSON ({err}); re-run `dvc repro -f -s"
                                           f" evaluate@{dataset}-{model}` to write it again") from None
            if not isinstance(content, dict):
                raise ComparisonInputError(
                    f"{path}: expected an object {{protocol: {{metric: value}}}}"
                )
            _check_metrics(content, reference.get(dataset, {}).get(model, {}), path, f"evaluate@{dataset}-{model}")
            reproduced.setdefault(dataset, {})[model] = content
    return reproduced


# ---------------------------------------------------------------------------------------------
# Comparing


def _check_tolerances(tolerances: Mapping[str, Any]) -> dict[str, float]:
    if not tolerances:
        raise ComparisonInputError("no tolerances given: nothing to compare")
    for metric, tol in tolerances.items():
        if metric not in REFERENCE_METRICS:
            raise ComparisonInputError(f"tolerance for unknown metric '{metric}' (allowed: "
                                       f"{', '.join(REFERENCE_METRICS)}); fix the spelling")
        if not _is_number(tol) or tol < 0:
            raise ComparisonInputError(
                f"tolerance for '{metric}' must be a non-negative number, got {tol!r}"
            )
    return {str(k): float(v) for k, v in tolerances.items()}


def _reproduced_metrics(
    reproduced: Mapping[str, Mapping[str, Any]], dataset: str, model: str, protocol: str
) -> Mapping[str, Any] | None:
    content = reproduced.get(dataset, {}).get(model)
    if content is None:
        return None
    if not isinstance(content, Mapping) or not isinstance(content.get(protocol), Mapping):
        keys = sorted(content) if isinstance(content, Mapping) else type(content).__name__
        raise ComparisonInputError(
            f"{dataset}/{model}: the metrics have no '{protocol}' protocol (found: {keys})"
        )
    return content[protocol]


def _cell(reproduced: Any, published: Any, tolerance: float, where: str) -> dict[str, Any]:
    if reproduced is not None and not _is_number(reproduced):
        raise ComparisonInputError(
            f"{where}: reproduced value must be a number, got {reproduced!r}"
        )
    cell: dict[str, Any] = {
        "reproduced": None if reproduced is None else float(reproduced),
        "published": None if published is None else float(published),
        "delta": None,
        "tolerance": tolerance,
        "pass": None,
        "missing": None,
    }
    if reproduced is None:
        cell["missing"] = "reproduced"
    elif published is None:
        cell["missing"] = "published"
    else:
        delta = float(reproduced) - float(published)
        cell["delta"] = delta
        cell["pass"] = abs(delta) <= tolerance + SLACK
    return cell


def _ranking(cells: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    values = {
        model: cells.get(model, {}).get(RANKING_METRIC, {}).get("reproduced")
        for model in PAPER_RANKING
    }
    holds = None
    if all(v is not None for v in values.values()):
        ordered = [values[m] for m in PAPER_RANKING]
        holds = all(a > b for a, b in zip(ordered, ordered[1:]))
    return {
        "metric": RANKING_METRIC,
        "order": list(PAPER_RANKING),
        "values": values,
        "holds": holds,
    }


def compare(
    reproduced: Mapping[str, Mapping[str, Any]],
    reference: Mapping[str, Mapping[str, Mapping[str, float]]],
    tolerances: Mapping[str, float],
    protocol: str = "paper",
) -> dict[str, Any]:
    """Compare reproduced metrics with reference values, cell by cell.

    Parameters
    ----------
    reproduced : ``{dataset: {model: {"paper": {...}, "fov": {...}}}}``
        The per-model metrics files' contents (as :func:`skunet.metrics.evaluate` returns).
    reference : ``{dataset: {model: {metric: value}}}``
        As :func:`load_reference` returns.
    tolerances : ``{metric: tolerance}``
        Only these metrics are compared; a cell passes when
        ``|reproduced - published| <= tolerance`` (with a 1e-12 slack for float rounding).
    protocol : str
        Which protocol of the reproduced metrics to compare (``paper`` or ``fov``).

    Returns
    -------
    A JSON-ready dict::

        {"protocol": "paper",
         "tolerances": {"f1": 0.02, ...},
         "datasets": {
            "drive": {
              "cells": {"skunet": {"f1": {"reproduced": 0.83, "published": 0.8291,
                                          "delta": 0.0009, "tolerance": 0.02,
                                          "pass": True, "missing": None}, ...}, ...},
              "ranking": {"metric": "f1", "order": ["skunet", "unet_dropblock", "unet"],
                          "values": {"skunet": 0.83, ...}, "holds": True}}},
         "n_cells": 18, "n_pass": 17, "n_missing": 0, "all_pass": False}

    A missing cell has ``"missing": "reproduced"`` (not run yet) or ``"published"`` (no
    reference value), ``delta`` and ``pass`` None. ``ranking.holds`` is None unless all three
    models have a reproduced F1; it is True when skunet > unet_dropblock > unet strictly.
    ``all_pass`` is True when at least one cell was compared and every compared cell passed.
    """
    tolerances = _check_tolerances(tolerances)
    datasets = list(dict.fromkeys([*reference, *reproduced]))
    out: dict[str, Any] = {"protocol": protocol, "tolerances": tolerances, "datasets": {}}
    n_cells = n_pass = n_missing = 0
    for dataset in datasets:
        ref_models = reference.get(dataset, {})
        models = list(dict.fromkeys([*ref_models, *reproduced.get(dataset, {})]))
        cells: dict[str, dict[str, Any]] = {}
        for model in models:
            rep = _reproduced_metrics(reproduced, dataset, model, protocol)
            for metric, tol in tolerances.items():
                published = ref_models.get(model, {}).get(metric)
                value = None if rep is None else rep.get(metric)
                if published is None and value is None:
                    continue
                cell = _cell(value, published, tol, f"{dataset}/{model}/{protocol}/{metric}")
                cells.setdefault(model, {})[metric] = cell
                if cell["missing"]:
                    n_missing += 1
                else:
                    n_cells += 1
                    n_pass += bool(cell["pass"])
        out["datasets"][dataset] = {"cells": cells, "ranking": _ranking(cells)}
    out.update(
        n_cells=n_cells,
        n_pass=n_pass,
        n_missing=n_missing,
        all_pass=n_cells > 0 and n_pass == n_cells,
    )
    return out


def flatten_for_dvc(result: Mapping[str, Any]) -> dict[str, Any]:
    """The comparison as DVC's metrics file wants it (``metrics/compare.json``, for `dvc metrics
    diff`): nested scalars only (DVC metrics drop lists and strings), booleans 0/1. Derived for
    DVC alone: everything else reads the :func:`compare` result itself.

    Layout::

        {"drive": {"skunet": {"f1": {"reproduced": .., "published": .., "delta": ..,
                                     "tolerance": .., "pass": 1}},
                   "ranking_holds": 1},
         "n_cells": 18, "n_pass": 18, "n_missing": 0, "all_pass": 1}

    A missing cell keeps the side it has plus ``"missing": 1``; ``ranking_holds`` is left out
    where the ranking could not be checked.
    """
    flat: dict[str, Any] = {}
    for dataset, block in result["datasets"].items():
        entry: dict[str, Any] = {}
        for model, metrics in block["cells"].items():
            for metric, cell in metrics.items():
                if cell["missing"]:
                    slim = {k: cell[k] for k in ("reproduced", "published", "tolerance")}
                    slim = {k: v for k, v in slim.items() if v is not None}
                    slim["missing"] = 1
                else:
                    slim = {k: cell[k] for k in ("reproduced", "published", "delta", "tolerance")}
                    slim["pass"] = int(bool(cell["pass"]))
                if cell.get("interval"):
                    slim["ci_low"], slim["ci_high"] = cell["interval"]
                entry.setdefault(model, {})[metric] = slim
        holds = block["ranking"]["holds"]
        if holds is not None:
            entry["ranking_holds"] = int(holds)
        flat[dataset] = entry
    flat.update(
        n_cells=int(result["n_cells"]),
        n_pass=int(result["n_pass"]),
        n_missing=int(result["n_missing"]),
        all_pass=int(bool(result["all_pass"])),
    )
    return flat


def attach_intervals(result: dict[str, Any], intervals: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`result` (a :func:`compare` result) with the bootstrap's view of each dataset
    (`intervals`: ``{dataset: skunet.uncertainty.model_intervals(...)}``): each reproduced cell
    gains ``interval`` ([low, high], 95% over resampled test images), each dataset block
    ``differences`` (model A - model B, interval, p-value) and, with all three models,
    ``ranking.verdict`` (supported / unresolved / contradicted at 95%). Pass and fail stay the
    tolerance rule. Returns `result`, changed in place."""
    result["bootstrap"] = None
    for dataset, boot in intervals.items():
        block = result["datasets"].get(dataset)
        if block is None:
            continue
        result["bootstrap"] = {k: boot[k] for k in ("n_images", "n_resamples", "seed", "confidence", "method")}
        for model, cells in block["cells"].items():
            for metric, cell in cells.items():
                bounds = boot["models"].get(model, {}).get(metric)
                if bounds is not None and cell["reproduced"] is not None:
                    cell["interval"] = [bounds["low"], bounds["high"]]
        block["differences"] = boot["differences"]
        if "ranking" in boot:
            block["ranking"]["verdict"] = boot["ranking"]["verdict"]
            block["ranking"]["sentence"] = boot["ranking"]["sentence"]
    return result


def attach_seeds(result: dict[str, Any], summary: Mapping[str, Any] | None, seed: int | None = None,
                 elsewhere: list[str] | None = None) -> dict[str, Any]:
    """`result` with each cell's spread over seeds (`summary`: :func:`skunet.seeds.summarize`,
    or None): ``seeds`` = {mean, sd, min, max, n}, and ``stale`` where the summary holds a value
    for this run's own `seed` that is not the reproduced one (the seeds ran another version of the
    code or data). `elsewhere`: how the environment the seeds ran in differs from this run's (see
    :func:`skunet.baseline.environment_differences`), where it does: there the same code and seed
    give other bits, so no cell is stale, and ``seeds_elsewhere`` says why. Changed in place and
    returned."""
    result["seeds"] = None if not summary else summary["seeds"]
    result["seeds_elsewhere"] = list(elsewhere or []) if summary else []
    for dataset, block in result["datasets"].items():
        for model, cells in block["cells"].items():
            for metric, cell in cells.items():
                spread = (summary or {}).get("cells", {}).get(dataset, {}).get(model, {}) \
                    .get(result["protocol"], {}).get(metric)
                if spread:
                    own = spread["values"].get(str(seed))
                    stale = (not elsewhere and own is not None and cell["reproduced"] is not None
                             and own != cell["reproduced"])
                    cell["seeds"] = {**{k: spread[k] for k in ("mean", "sd", "min", "max")},
                                     "n": len(spread["values"]), "stale": stale}
    return result


# ---------------------------------------------------------------------------------------------
# Printing a result


def result_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per cell of a :func:`compare` result.

    Each row: ``dataset, model, metric, reproduced, published, delta, tolerance`` (numbers or
    None), ``pass`` (bool, None when missing) and ``missing`` (None, "reproduced", "published").
    """
    return [
        {"dataset": dataset, "model": model, "metric": metric, **cell}
        for dataset, block in result["datasets"].items()
        for model, metrics in block["cells"].items()
        for metric, cell in metrics.items()
    ]


def ranking_lines(result: Mapping[str, Any]) -> list[str]:
    """One sentence per dataset on whether the paper's F1 ranking holds in the reproduction."""
    order = " > ".join(PAPER_RANKING)
    lines = []
    for dataset, block in result["datasets"].items():
        holds, values = block["ranking"]["holds"], block["ranking"]["values"]
        if holds is None:
            lines.append(
                f"{dataset}: paper's {RANKING_METRIC.upper()} ranking ({order}) not checked: "
                "needs all three models"
            )
            continue
        verdict = "holds" if holds else "does NOT hold"
        shown = ", ".join(f"{m} {values[m]:.4f}" for m in PAPER_RANKING)
        line = f"{dataset}: paper's {RANKING_METRIC.upper()} ranking ({order}) {verdict} ({shown})"
        if block["ranking"].get("sentence"):
            line += "; " + block["ranking"]["sentence"]
        lines.append(line)
    return lines


def percent(fraction: float) -> str:
    """A confidence level as a percentage, as precise as it was given (0.95: 95%, 0.999: 99.9%)."""
    return f"{round(fraction * 100, 10):.15g}%"


def _num(value: Any, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _spread(seeds: Any) -> str:
    if not seeds:
        return " - |"
    stale = ", STALE" if seeds.get("stale") else ""
    return f" {seeds['mean']:.4f} ± {seeds['sd']:.4f} [{seeds['min']:.4f}, {seeds['max']:.4f}] (n={seeds['n']}{stale}) |"


def _interval(bounds: Any) -> str:
    return "-" if not bounds else f"[{bounds[0]:.4f}, {bounds[1]:.4f}]"


def summary_line(result: Mapping[str, Any]) -> str:
    """``N/M compared cells within tolerance; K missing``."""
    n_cells, n_pass, n_missing = (int(result[k]) for k in ("n_cells", "n_pass", "n_missing"))
    if n_cells == 0:
        return (
            f"no cell compared (reproduced and published values never overlap); "
            f"{n_missing} missing"
        )
    verdict = "all pass" if n_pass == n_cells else f"{n_cells - n_pass} FAIL"
    return f"{n_pass}/{n_cells} compared cells within tolerance ({verdict}); {n_missing} missing"


def format_table(result: Mapping[str, Any]) -> str:
    """A Markdown table of every cell of a :func:`compare` result, then the ranking lines and a
    summary line."""
    boot = result.get("bootstrap")
    level = f"{percent(boot['confidence'])} interval" if boot else "interval"
    seeds = result.get("seeds")
    over = " over seeds: mean ± sd [min, max] |" if seeds else ""
    header = f"| dataset | model | metric | reproduced | {level} |{over} published | delta | tolerance | pass |"
    lines = [header, "|---|---|---|---:|---:|" + ("---:|" if seeds else "") + "---:|---:|---:|---|"]
    for row in result_rows(result):
        if row["missing"]:
            verdict = f"missing {row['missing']}"
        else:
            verdict = "pass" if row["pass"] else "FAIL"
        lines.append(
            f"| {row['dataset']} | {row['model']} | {row['metric']} | {_num(row['reproduced'])} "
            f"| {_interval(row.get('interval'))} |{_spread(row.get('seeds')) if seeds else ''} {_num(row['published'])} | {_num(row['delta'], signed=True)} "
            f"| {_num(row['tolerance'])} | {verdict} |"
        )
    lines.append("")
    lines.extend(f"- {line}" for line in ranking_lines(result))
    lines.append("")
    if boot:
        lines += [f"{level}: {boot['method']} interval of a paired bootstrap over the test images "
                  f"(each resample draws the images with replacement and scores every model on them, "
                  f"pooled; {boot['n_resamples']} resamples, seed {boot['seed']}); it describes the "
                  "spread from the choice of test images, not from training again with another seed.", ""]
    if seeds:
        stale = any((row.get("seeds") or {}).get("stale") for row in result_rows(result))
        lines += [f"Over seeds: the whole pipeline run again with seeds {', '.join(map(str, seeds))} "
                  "(`skunet seeds`, seeds/<profile>.json); the reproduced column is the run with "
                  "params.yaml's seed." + (" STALE: the seeds gave this run's own seed another value, so "
                                           "they ran another version of the code or data; run `skunet seeds` "
                                           "again." if stale else "")
                  + (" The seeds ran in another environment than this run (" + "; ".join(result["seeds_elsewhere"])
                     + "), where the same code and seed give other bits: the spread is theirs, the reproduced"
                     " column this machine's own." if result.get("seeds_elsewhere") else ""), ""]
    lines.append(f"protocol `{result['protocol']}`: " + summary_line(result))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# skunet check


def missing_models(result: Mapping[str, Any], metrics_dir: Path,
                   models_dir: Path | None = None) -> list[dict[str, Any]]:
    """The models with a published (or baseline) value but no metrics file yet, each with its
    missing metrics and why: ``trained, not yet evaluated`` where its checkpoint is in
    `models_dir` (default: ``models`` beside `metrics_dir`), else ``not yet trained``."""
    models_dir = Path(metrics_dir).parent / "models" if models_dir is None else Path(models_dir)
    missing: dict[tuple[str, str], list[str]] = {}
    for row in result_rows(result):
        if row["missing"] == "reproduced":
            missing.setdefault((row["dataset"], row["model"]), []).append(row["metric"])
    return [{"dataset": dataset, "model": model, "metrics": metrics,
             "why": ("trained, not yet evaluated" if (models_dir / dataset / f"{model}.pt").is_file()
                     else "not yet trained")}
            for (dataset, model), metrics in missing.items()]


def in_training(root: Path, dataset: str, model: str) -> tuple[str, bool] | None:
    """How far the training of `model` on `dataset` has got, where the checkout at `root` holds its
    resume state (a training stopped, or a lease's piece taken), and whether the train stage goes on
    from it: ("in training, 42 epochs done", True); None where it holds none. Not an input of the
    compare stage, whose report calls such a model not yet trained: the commands that speak of the
    checkout as it is now (check, readme) say more."""
    path = Path(root) / ".skunet-state" / f"{dataset}-{model}.pt"
    if not path.is_file():
        return None
    import torch  # read here, not through skunet.checkpoints: the audit stage, which imports this
    # module, would then depend on the models too

    try:
        done = len(torch.load(path, map_location="cpu", weights_only=True)["history"])
    except Exception:  # torch.load fails on a damaged file in many ways (IndexError among them); the
        # train stage's own reader says why, and starts over
        return f"in training, its resume state {path.name} damaged (the train stage starts it over)", False
    return f"in training, {done} epoch{'' if done == 1 else 's'} done", True


def missing_results(result: Mapping[str, Any], metrics_dir: Path, models_dir: Path | None = None) -> list[str]:
    """One line per model with a published (or baseline) value but no metrics file yet, with the
    command that makes it. A model not yet trained whose train stage left a resume state in
    ``.skunet-state/`` (a training stopped, or a lease's piece taken) is said to be in training."""
    lines = []
    for m in missing_models(result, metrics_dir, models_dir):
        stage = f"`dvc repro evaluate@{m['dataset']}-{m['model']}`"
        if m["why"].startswith("trained"):
            then = f"; {stage}"
        elif progress := in_training(Path(metrics_dir).parent, m["dataset"], m["model"]):
            m = {**m, "why": progress[0]}
            then = f"; {stage} " + ("goes on from there and evaluates it" if progress[1] else "trains and evaluates it")
        else:
            then = f"; {stage} trains and evaluates it"
        lines.append(f"{m['dataset']}/{m['model']}: {', '.join(m['metrics'])} not reproduced (no "
                     f"{Path(metrics_dir) / m['dataset'] / m['model']}.json: {m['why']}{then})")
    return lines


def run_check(
    metrics_dir: Path,
    reference_path: Path,
    tolerances: Mapping[str, float],
    protocol: str = "paper",
    allow_missing: bool = False,
    judge: Callable[[Mapping[str, Any], bool], tuple[int, str]] | None = None,
) -> tuple[int, str]:
    """Compare every ``metrics_dir/<dataset>/<model>.json`` with the reference file.

    Returns ``(exit_code, text)``: 0 when at least one cell was compared, every compared cell is
    within tolerance and no reference cell lacks its reproduced value; 1 otherwise (including
    when no metrics file exists yet). With `allow_missing` (a declared partial run) cells not yet
    reproduced do not fail the check; the text names them either way. With `judge`, the exit
    status is its answer instead, given the comparison and whether a result is missing unallowed;
    its text follows the table (the known deviations, :mod:`skunet.known`). A malformed file
    raises :class:`ComparisonInputError` naming it.
    """
    reference = load_reference(reference_path)
    check_complete(reference, _check_tolerances(tolerances), reference_path)
    reproduced = load_reproduced(metrics_dir, reference)
    if not reproduced:
        return 1, (
            f"no metrics found: expected files like {Path(metrics_dir) / 'drive' / 'unet.json'} "
            "(run the evaluate stage first, e.g. `dvc repro`)\n"
        )
    result = compare(reproduced, reference, tolerances, protocol=protocol)
    text = f"Comparison with {reference_path} (protocol `{protocol}`)\n\n" + format_table(result)
    missing = missing_results(result, metrics_dir)
    if missing:
        verdict = ("allowed (--allow-missing): a partial run" if allow_missing
                   else "FAIL: a missing result fails the check; pass --allow-missing for a partial run")
        text += f"\n{len(missing)} model(s) missing, {verdict}:\n" + "".join(f"- {line}\n" for line in missing)
    if judge is not None:
        code, said = judge(result, bool(missing) and not allow_missing)
        return code, text + said
    passed = result["all_pass"] and (allow_missing or not missing)
    return (0 if passed else 1), text
