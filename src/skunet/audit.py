"""Consistency audit of published scores: which evaluations could have produced them.

A row of published scores (accuracy, F1, ...) on a known test set fits some evaluation protocols
and not others: the confusion counts behind it must be whole numbers that add up to the test set's
vessel (P) and background (N) pixels. This module asks `mlscorecheck`_ (Fazekas & Kovacs), which
ships the per-image P and N of DRIVE and CHASE_DB1, whether a confusion matrix (or one per image)
exists that reproduces the scores within their rounding. An *inconsistent* verdict is a proof that
the scores were not computed that way; a *consistent* one only says they could have been.

An evaluation is an :class:`Assumption`:

* pixels: ``all`` (every pixel of each whole image, as our ``paper`` protocol) or ``fov`` (only the
  pixels inside the field-of-view mask, as our ``fov`` protocol);
* aggregation: ``pooled`` (one confusion matrix summed over the test images, scores of it:
  mlscorecheck's "som") or ``mean`` (scores of each image, averaged: its "mos");
* annotator: 1 (the labels everyone trains on: DRIVE ``1st_manual``, CHASE_DB1 ``1stHO``) or 2.

Test sets: DRIVE images 01-20; CHASE_DB1 Image_11L ... Image_14R (the last 8 of 28). mlscorecheck
ships no FOV counts for CHASE_DB1, so only its whole-image assumptions are tested.

The pure functions (:func:`audit_scores`, :func:`audit_reference`, :func:`implied_pooled`,
:func:`self_audit`) read only mlscorecheck's bundled counts; :func:`format_audit_table` prints.
Verdicts are always computed, never written by hand: the audit stage computes them from
published/paper.yaml into :data:`PUBLISHED_AUDIT_JSON` whenever that file or this code changes, and
the compare stage reads them (:func:`read_published_audit`) instead of spending seconds on every run.

.. _mlscorecheck: https://github.com/FalseNegativeLab/mlscorecheck
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from mlscorecheck.check.binary import check_1_testset_no_kfold
from mlscorecheck.check.bundles.retina import (
    check_chasedb1_vessel_aggregated_mos,
    check_chasedb1_vessel_aggregated_som,
    check_drive_vessel_aggregated_mos_assumption,
    check_drive_vessel_aggregated_som_assumption,
)
from mlscorecheck.core import NUMERICAL_TOLERANCE
from mlscorecheck.experiments import get_experiment

from skunet.compare import CONTEXT_KEYS, parse_reference, read_yaml_file
from skunet.errors import SkunetError, reason
from skunet.metrics import COUNT_NAMES, scores_from_counts

# Published scores have 4 printed decimals: each is within 5e-5 of its true value. mlscorecheck's
# convention for scores rounded to k digits is eps = 10**-k, twice that bound (lenient: a verdict
# "inconsistent" at 1e-4 holds at 5e-5 too).
PUBLISHED_EPS = 1e-4
# Our own scores are ratios of integer counts in double precision (relative error ~1e-16), while
# one pixel more or less moves any of them by at least ~1e-7 on these test sets (accuracy by
# 1/(P+N) >= 1.3e-7): 1e-9 is far above float error and far below a one-pixel change.
# mlscorecheck adds its numerical tolerance to eps; its default (1e-6) would swamp 1e-9.
SELF_EPS = 1e-9
SELF_NUMERICAL_TOLERANCE = 1e-12
# mlscorecheck's mean-of-images check requires eps > 10 x its numerical tolerance (1e-6).
MIN_EPS = 10 * NUMERICAL_TOLERANCE
# LP solver time limit (seconds) for a mean-of-images check; a timeout gives "not testable".
MEAN_TIMEOUT = 60

CONSISTENT, INCONSISTENT, NOT_TESTABLE = "consistent", "inconsistent", "not testable"
# Our score names -> mlscorecheck's. AUC is absent: no check takes it.
SCORE_KEYS = {
    "accuracy": "acc",
    "sensitivity": "sens",
    "specificity": "spec",
    "precision": "ppv",
    "f1": "f1",
}
# What each aggregation's check accepts (of SCORE_KEYS): mlscorecheck's mean-of-images (LP) check
# takes only acc, sens, spec, bacc.
ACCEPTED = {"pooled": ("acc", "sens", "spec", "ppv", "f1"), "mean": ("acc", "sens", "spec")}
# A verdict needs two scores: on millions of pixels one score alone fits any value in [0, 1] (its
# possible values are at most ~2e-6 apart, much closer than eps), so its check is always passed.
MIN_SCORES = 2

DATASET_NAMES = {"drive": "DRIVE", "chase": "CHASE_DB1"}
CHASE_TEST = ("11L", "11R", "12L", "12R", "13L", "13R", "14L", "14R")
# Published tables: the paper's own models (Tables 3-4) and the other methods (Tables 5-6).
TABLES = {("drive", False): 3, ("chase", False): 4, ("drive", True): 5, ("chase", True): 6}


class AuditInputError(SkunetError, ValueError):
    """Scores, counts or a reference that the audit cannot take (unknown dataset, not a number)."""


@dataclass(frozen=True)
class Assumption:
    """One way the published scores could have been computed (see the module docstring)."""

    pixels: str  # "all" | "fov"
    aggregation: str  # "pooled" | "mean"
    annotator: int  # 1 | 2

    @property
    def label(self) -> str:
        """E.g. "all pixels, pooled, 1st annotator"."""
        pixels = "all pixels" if self.pixels == "all" else "FOV pixels"
        return f"{pixels}, {self.aggregation}, {'1st' if self.annotator == 1 else '2nd'} annotator"

    @property
    def key(self) -> str:
        """A short column name, e.g. "all/pooled/1"."""
        return f"{self.pixels}/{self.aggregation}/{self.annotator}"


def _assumptions(pixels: Sequence[str]) -> tuple[Assumption, ...]:
    return tuple(
        Assumption(p, a, n) for a, p, n in itertools.product(("pooled", "mean"), pixels, (1, 2))
    )


# The evaluations mlscorecheck can test per dataset (pooled before mean, all before fov).
AUDIT_ASSUMPTIONS: dict[str, tuple[Assumption, ...]] = {
    "drive": _assumptions(("all", "fov")),
    "chase": _assumptions(("all",)),  # mlscorecheck ships no FOV counts for CHASE_DB1
}
ALL_ASSUMPTIONS = AUDIT_ASSUMPTIONS["drive"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_dataset(dataset: str) -> None:
    if dataset not in AUDIT_ASSUMPTIONS:
        expected = ", ".join(AUDIT_ASSUMPTIONS)
        raise AuditInputError(f"unknown dataset {dataset!r}: expected one of {expected}")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """mlscorecheck logs every step at INFO on its own handler, and the PuLP it drives warns of
    its own deprecations: keep both quiet meanwhile."""
    logger = logging.getLogger("mlscorecheck")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


# ---------------------------------------------------------------------------------------------
# The test sets as mlscorecheck ships them


def per_image_counts(dataset: str, pixels: str = "all", annotator: int = 1) -> list[dict[str, Any]]:
    """Per-image ``{"identifier", "p", "n"}`` of the test set, from mlscorecheck's bundled counts.

    ``p`` / ``n``: vessel / background pixels of the image (whole image for ``pixels="all"``,
    inside the official FOV mask for ``"fov"``, DRIVE only) under the given annotator.
    """
    _check_dataset(dataset)
    if pixels not in {a.pixels for a in AUDIT_ASSUMPTIONS[dataset]}:
        raise AuditInputError(f"{dataset}: mlscorecheck ships no counts for pixels={pixels!r}")
    if annotator not in (1, 2):
        raise AuditInputError(f"annotator must be 1 or 2, got {annotator!r}")
    if dataset == "drive":
        images = get_experiment("retina.drive")[(annotator, pixels)]["test"]["images"]
    else:
        chase = get_experiment("retina.chase_db1")[f"manual{annotator}"]["images"]
        images = [image for image in chase if image["identifier"] in CHASE_TEST]
    return [dict(image) for image in images]


def total_counts(dataset: str, pixels: str = "all", annotator: int = 1) -> tuple[int, int]:
    """(P, N): vessel and background pixels of the whole test set (:func:`per_image_counts`)."""
    images = per_image_counts(dataset, pixels, annotator)
    return sum(int(i["p"]) for i in images), sum(int(i["n"]) for i in images)


def _source(dataset: str, pixels: str, annotator: int) -> str:
    images = "images 01-20" if dataset == "drive" else "Image_11L-14R"
    return (
        f"mlscorecheck {version('mlscorecheck')} bundled annotations: {DATASET_NAMES[dataset]} "
        f"test {images}, {'whole images' if pixels == 'all' else 'inside the FOV'}, "
        f"annotator {annotator}"
    )


# ---------------------------------------------------------------------------------------------
# One row of scores


def _mlscorecheck_scores(scores: Mapping[str, Any], where: str) -> dict[str, float]:
    """The scores mlscorecheck knows, under its names; each must be a number in [0, 1]."""
    out = {}
    for name, key in SCORE_KEYS.items():
        if name not in scores:
            continue
        value = scores[name]
        if not _is_number(value) or not 0 <= value <= 1:
            raise AuditInputError(f"{where}: '{name}' must be a number in [0, 1], got {value!r}")
        out[key] = float(value)
    return out


def _run_check(dataset: str, assumption: Assumption, scores: dict[str, float], eps: float) -> dict:
    """mlscorecheck's check for `assumption` on the test set; its result dict."""
    annotator = assumption.annotator
    with _quiet():
        if dataset == "drive" and assumption.aggregation == "pooled":
            return check_drive_vessel_aggregated_som_assumption(
                "test", assumption.pixels, annotator, scores, eps
            )
        if dataset == "drive":
            return check_drive_vessel_aggregated_mos_assumption(
                "test", assumption.pixels, annotator, scores, eps, timeout=MEAN_TIMEOUT, verbosity=0
            )
        ids, manual = list(CHASE_TEST), f"manual{annotator}"
        if assumption.aggregation == "pooled":
            return check_chasedb1_vessel_aggregated_som(ids, manual, scores, eps)
        return check_chasedb1_vessel_aggregated_mos(
            ids, manual, scores, eps, timeout=MEAN_TIMEOUT, verbosity=0
        )


def _verdict(dataset: str, assumption: Assumption, scores: dict[str, float], eps: float) -> dict:
    used = {k: v for k, v in scores.items() if k in ACCEPTED[assumption.aggregation]}
    if len(used) < MIN_SCORES:
        accepted = ", ".join(ACCEPTED[assumption.aggregation])
        reason = (
            f"needs two of {accepted}; usable here: {', '.join(used) or 'none'} "
            "(one score alone fits any value on millions of pixels)"
        )
        return {"verdict": NOT_TESTABLE, "scores_used": sorted(used), "reason": reason}
    result = _run_check(dataset, assumption, used, eps)
    if result.get("lp_status") == "timeout":
        reason = f"the LP solver timed out after {MEAN_TIMEOUT} s"
        return {"verdict": NOT_TESTABLE, "scores_used": sorted(used), "reason": reason}
    verdict = INCONSISTENT if result["inconsistency"] else CONSISTENT
    return {"verdict": verdict, "scores_used": sorted(used), "reason": None}


def audit_scores(
    dataset: str, scores: Mapping[str, Any], eps: float = PUBLISHED_EPS
) -> dict[str, Any]:
    """The verdict of every :data:`AUDIT_ASSUMPTIONS` evaluation on one row of scores.

    Parameters
    ----------
    dataset : "drive" or "chase"
        The test set: DRIVE 01-20 or CHASE_DB1 Image_11L-14R.
    scores : ``{"f1": .., "accuracy": .., ...}``
        Optional ``sensitivity``, ``specificity``, ``precision``; others (``auc``) are ignored,
        since no mlscorecheck check takes them.
    eps : float
        Numerical uncertainty of each score. The default 1e-4 suits 4 printed decimals: rounding
        puts the true value within 5e-5, and 10**-digits is mlscorecheck's convention (lenient).

    Returns
    -------
    ``{"dataset", "eps", "scores", "verdicts": {label: {"verdict", "scores_used", "reason"}}}``.
    A verdict is ``consistent`` (a confusion matrix, or one per image, reproduces every score
    used within eps), ``inconsistent`` (none does: mlscorecheck's ``inconsistency`` flag), or
    ``not testable``: fewer than two scores the check accepts (a mean-of-images check takes only
    accuracy, sensitivity and specificity, so F1 and precision cannot be tested that way), or the
    solver timed out; ``reason`` says which. ``scores_used`` are mlscorecheck's names.
    """
    _check_dataset(dataset)
    if not _is_number(eps) or not eps > MIN_EPS:
        raise AuditInputError(f"eps must be a number above {MIN_EPS:g}, got {eps!r}")
    known = _mlscorecheck_scores(scores, dataset)
    verdicts = {a.label: _verdict(dataset, a, known, eps) for a in AUDIT_ASSUMPTIONS[dataset]}
    return {"dataset": dataset, "eps": eps, "scores": dict(scores), "verdicts": verdicts}


# ---------------------------------------------------------------------------------------------
# The published tables


def reference_rows(data: Any, where: Path) -> list[tuple[str, str, int, dict[str, float]]]:
    """(dataset, method, table, scores) for the paper's models, then the other methods."""
    if not isinstance(data, dict):
        raise SkunetError(f"{where}: expected a mapping {{dataset: {{model: {{metric: value}}}}}}, as"
                          " published/paper.yaml; give that file or one of its layout")
    main = parse_reference({k: v for k, v in data.items() if k not in CONTEXT_KEYS}, where)
    others = parse_reference(data["others"], where, models=None) if data.get("others") else {}
    rows = []
    for is_other, block in ((False, main), (True, others)):
        for dataset, methods in block.items():
            _check_dataset(dataset)
            for method, scores in methods.items():
                rows.append((dataset, method, TABLES[dataset, is_other], scores))
    return rows


def audit_reference(
    reference: Mapping[str, Any] | Path | str, eps: float = PUBLISHED_EPS
) -> dict[str, Any]:
    """Verdicts for every published row: the paper's models (Tables 3-4) and ``others`` (5-6).

    `reference` is ``published/paper.yaml`` (a path) or its parsed contents.

    Returns
    -------
    A JSON-ready dict::

        {"eps": 1e-4, "checker": "mlscorecheck 1.0.3",
         "assumptions": {"all pixels, pooled, 1st annotator": "all/pooled/1", ...},
         "rows": [{"dataset": "drive", "method": "skunet", "table": 3,
                   "scores": {"f1": .., "accuracy": .., "auc": ..},
                   "verdicts": {label: "consistent" | "inconsistent" | "not testable"}}, ...]}

    A row has a verdict for each assumption of its dataset (:data:`AUDIT_ASSUMPTIONS`).
    """
    if isinstance(reference, (str, Path)):
        where = Path(reference)
        data = read_yaml_file(where)
    else:
        where, data = Path("<reference>"), reference
    if not isinstance(data, Mapping):
        raise AuditInputError(
            f"{where}: expected a mapping {{dataset: {{model: {{metric: value}}}}}}"
        )
    rows = []
    for dataset, method, table, scores in reference_rows(data, where):
        audit = audit_scores(dataset, scores, eps)
        verdicts = {label: v["verdict"] for label, v in audit["verdicts"].items()}
        row = {"dataset": dataset, "method": method, "table": table, "scores": scores}
        rows.append({**row, "verdicts": verdicts})
    return {
        "eps": eps,
        "checker": f"mlscorecheck {version('mlscorecheck')}",
        "assumptions": {a.label: a.key for a in ALL_ASSUMPTIONS},
        "rows": rows,
    }


# The audit stage's input, the paper's Tables 3-6 (the compare stage's reference too), and its
# output: :func:`audit_reference` of that file.
PUBLISHED_YAML = Path("published") / "paper.yaml"
PUBLISHED_AUDIT_JSON = Path("reports") / "published_audit.json"


def read_published_audit(reference: Path, path: Path = PUBLISHED_AUDIT_JSON) -> dict[str, Any]:
    """The audit stage's verdicts on the rows of `reference` (published/paper.yaml). A file that is
    missing, damaged or made from other published values (the stage not re-run since the file
    was edited) is one line saying to run the audit stage."""
    again = "run `dvc repro audit`"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuditInputError(f"{path}: not found; {again}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AuditInputError(f"{path}: unreadable ({reason(err)}); {again.replace('repro', 'repro -f -s')}") from None
    rows = data.get("rows") if isinstance(data, dict) else None
    if (not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows)
            or not isinstance(data.get("assumptions"), dict)):
        raise AuditInputError(f"{path}: not as the audit stage writes it; {again.replace('repro', 'repro -f -s')}")
    audited = [(r.get("dataset"), r.get("method"), r.get("table"), r.get("scores")) for r in rows]
    if audited != [tuple(row) for row in reference_rows(read_yaml_file(reference), reference)]:
        raise AuditInputError(f"{path}: audits other published values than {reference}'s; {again}")
    return data


MARKS = {CONSISTENT: "✓", INCONSISTENT: "✗", NOT_TESTABLE: "–"}


def format_audit_table(result: Mapping[str, Any]) -> str:
    """An :func:`audit_reference` result as a Markdown table and a legend line.

    One row per published row, one column per assumption: ✓ consistent, ✗ inconsistent,
    – not testable, n/a where mlscorecheck has no counts (CHASE_DB1 FOV).
    """
    assumptions = result["assumptions"]
    header = ["dataset", "table", "method", "acc", "F1", *assumptions.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result["rows"]:
        scores = row["scores"]
        cells = [
            DATASET_NAMES.get(row["dataset"], row["dataset"]),
            str(row["table"]),
            row["method"],
            *(f"{scores[k]:.4f}" if k in scores else "" for k in ("accuracy", "f1")),
            *(MARKS.get(row["verdicts"].get(label), "n/a") for label in assumptions),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    legend = (
        "Columns: pixels (all = whole image, fov = inside the FOV mask) / aggregation (pooled = "
        "scores of the counts summed over the test images, mean = mean of per-image scores) / "
        "annotator. ✓ consistent, ✗ inconsistent, – not testable (a mean check takes only "
        "acc, sens, spec: accuracy alone fits anything), n/a no counts in mlscorecheck. "
        f"Tolerance eps = {result['eps']:g} per score ({result['checker']}); test sets DRIVE "
        "01-20, CHASE_DB1 Image_11L-14R."
    )
    return "\n".join(lines) + "\n\n" + legend + "\n"


# ---------------------------------------------------------------------------------------------
# What a consistent row implies


def _implied(p: int, n: int, accuracy: float, f1: float) -> dict[str, float]:
    """Pooled counts and scores from accuracy and F1 on P + N pixels (real numbers, not rounded).

    fp + fn = (1 - acc)(P + N) and F1 = 2 tp / (2 tp + fp + fn) give
    tp = F1 (P + N)(1 - acc) / (2 (1 - F1)); then fn = P - tp, fp = errors - fn, tn = N - fp.
    """
    errors = (1.0 - accuracy) * (p + n)
    tp = f1 * errors / (2.0 * (1.0 - f1))
    fn = p - tp
    fp = errors - fn
    tn = n - fp
    scores = {"sensitivity": tp / p, "specificity": tn / n, "precision": tp / (tp + fp)}
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, **scores}


def implied_pooled(dataset: str, accuracy: float, f1: float, digits: int = 4) -> dict[str, Any]:
    """Sensitivity, specificity and precision implied by a pooled whole-image accuracy and F1.

    For a row consistent with "all pixels, pooled, 1st annotator": with P vessel and N background
    pixels of the whole test set (mlscorecheck's bundled counts, summed over the test images),
    accuracy and F1 fix the pooled confusion matrix (see :func:`_implied`), hence every other
    score. Each implied score comes with the interval spanned by the rounding of the inputs: its
    values at the four corners of [x - h, x + h] for x = accuracy, F1 and h = 0.5 * 10**-digits.

    Returns
    -------
    ``{"dataset", "accuracy", "f1", "digits", "pixels": {"P", "N", "source"},
    "counts": {"tp", "fp", "fn", "tn"} (point values, real), "scores": {name: {"value", "low",
    "high"}}}`` for sensitivity, specificity, precision.

    Raises
    ------
    AuditInputError
        When the point values imply impossible counts (negative, or more than P or N): the row
        cannot come from pooled whole-image scoring.
    """
    p, n = total_counts(dataset, "all", 1)
    for name, value in (("accuracy", accuracy), ("f1", f1)):
        if not _is_number(value) or not 0 <= value < 1:
            raise AuditInputError(f"{dataset}: {name} must be a number in [0, 1), got {value!r}")
    point = _implied(p, n, accuracy, f1)
    if not all(0 <= point[k] <= (p if k in ("tp", "fn") else n) for k in COUNT_NAMES):
        counts = ", ".join(f"{k} {point[k]:,.0f}" for k in COUNT_NAMES)
        raise AuditInputError(
            f"{dataset}: accuracy {accuracy} and F1 {f1} imply impossible pooled whole-image "
            f"counts ({counts}; P {p:,}, N {n:,})"
        )
    h = 0.5 * 10.0**-digits
    corners = [_implied(p, n, a, f) for a in (accuracy - h, accuracy + h) for f in (f1 - h, f1 + h)]
    scores = {  # a score is a fraction: the rounding's corners may step past 0 or 1, the score cannot
        name: {
            "value": point[name],
            "low": max(0.0, min(c[name] for c in corners)),
            "high": min(1.0, max(c[name] for c in corners)),
        }
        for name in ("sensitivity", "specificity", "precision")
    }
    return {
        "dataset": dataset,
        "accuracy": accuracy,
        "f1": f1,
        "digits": digits,
        "pixels": {"P": p, "N": n, "source": _source(dataset, "all", 1)},
        "counts": {k: point[k] for k in COUNT_NAMES},
        "scores": scores,
    }


# ---------------------------------------------------------------------------------------------
# Our own metrics


def _protocol_counts(
    dataset: str, protocol: str, pixels: tuple[int, int] | None
) -> tuple[int, int, str]:
    """(P, N, source) of the test set under one of our protocols, 1st annotator."""
    if protocol not in ("paper", "fov"):
        raise AuditInputError(f"unknown protocol {protocol!r}: expected paper or fov")
    if pixels is not None:
        return int(pixels[0]), int(pixels[1]), "the test set's labels and FOV masks in data/raw"
    if protocol == "paper":
        return (*total_counts(dataset, "all", 1), _source(dataset, "all", 1))
    if dataset == "drive":
        return (*total_counts(dataset, "fov", 1), _source(dataset, "fov", 1))
    raise AuditInputError(
        f"{dataset}/fov: mlscorecheck ships no FOV counts for {DATASET_NAMES[dataset]}; "
        "pass pixels=(P, N) from our FOV masks"
    )


def self_audit(
    dataset: str,
    protocol: str,
    metrics: Mapping[str, Any],
    pixels: tuple[int, int] | None = None,
) -> list[str]:
    """Problems with one protocol block of our metrics JSON (empty list: it passes).

    Checks, against the test set's pixels under the protocol the block claims (``paper``: whole
    images, ``fov``: inside the FOV; 1st annotator):

    (a) the pooled counts add up: tp + fn == P and fp + tn == N, with (P, N) = `pixels` (the
        compare stage counts them in data/raw, so the check holds on any copy of the data) or,
        without it, mlscorecheck's bundled counts (DRIVE both protocols, CHASE_DB1 ``paper``;
        CHASE_DB1's FOV masks are derived here, so mlscorecheck has none);
    (b) the scores fit a confusion matrix of P and N pixels: mlscorecheck's single-test-set check
        (``check_1_testset_no_kfold``, which the pooled bundles call with the summed P and N);
    (c) every score equals the one recomputed from the block's own counts
        (:func:`skunet.metrics.scores_from_counts`).

    (b) and (c) use eps = 1e-9: far above the error of a double-precision ratio, far below the
    change one pixel makes (>= ~1e-7 here). Each problem is one line naming dataset/protocol.
    """
    _check_dataset(dataset)
    where = f"{dataset}/{protocol}"
    p, n, source = _protocol_counts(dataset, protocol, pixels)
    counts = {}
    for k in COUNT_NAMES:
        value = metrics.get(k)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise AuditInputError(f"{where}: '{k}' must be a non-negative integer, got {value!r}")
        counts[k] = value
    problems = []
    tp, fp, fn, tn = (counts[k] for k in COUNT_NAMES)
    if tp + fn != p:
        problems.append(
            f"{where}: tp + fn = {tp + fn:,} vessel pixels, expected P = {p:,} ({source})"
        )
    if fp + tn != n:
        problems.append(
            f"{where}: fp + tn = {fp + tn:,} background pixels, expected N = {n:,} ({source})"
        )

    known = _mlscorecheck_scores(metrics, where)
    if len(known) >= MIN_SCORES:
        with _quiet():
            result = check_1_testset_no_kfold(
                {"p": p, "n": n}, known, SELF_EPS, numerical_tolerance=SELF_NUMERICAL_TOLERANCE
            )
        if result["inconsistency"]:
            problems.append(
                f"{where}: {', '.join(known)} fit no confusion matrix of P = {p:,} and N = {n:,} "
                f"pixels (mlscorecheck, eps {SELF_EPS:g})"
            )

    recomputed = scores_from_counts(counts)
    for name, expected in recomputed.items():
        value = metrics.get(name)
        if value is None:
            continue
        if not _is_number(value):
            raise AuditInputError(f"{where}: '{name}' must be a finite number, got {value!r}")
        if abs(value - expected) > SELF_EPS:
            problems.append(
                f"{where}: {name} = {value!r}, but the counts give {expected!r} "
                f"(difference {value - expected:.3g})"
            )
    return problems


# ---------------------------------------------------------------------------------------------
# What the compare stage takes from the audit

IMPLIED_NAMES = ("sensitivity", "specificity", "precision")
POOLED_WHOLE_IMAGE = Assumption("all", "pooled", 1)


def implied_cells(audit: Mapping[str, Any], reproduced: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Extra cells "implied by the published accuracy and F1": for each of the paper's own rows
    (Tables 3-4) consistent with pooled whole-image scoring, the sensitivity, specificity and
    precision :func:`implied_pooled` gives, beside ours under the ``paper`` protocol (None where
    that model is not reproduced yet) and their difference."""
    cells = []
    for row in audit["rows"]:
        if row["table"] not in (3, 4) or row["verdicts"].get(POOLED_WHOLE_IMAGE.label) != CONSISTENT:
            continue
        implied = implied_pooled(row["dataset"], row["scores"]["accuracy"], row["scores"]["f1"])
        ours = reproduced.get(row["dataset"], {}).get(row["method"], {}).get("paper", {})
        for name in IMPLIED_NAMES:
            value = ours.get(name)
            bounds = implied["scores"][name]
            cells.append({"dataset": row["dataset"], "model": row["method"], "metric": name,
                          "implied": bounds["value"], "low": bounds["low"], "high": bounds["high"],
                          "reproduced": value,
                          "delta": None if value is None else value - bounds["value"]})
    return cells


def format_implied_table(cells: Sequence[Mapping[str, Any]]) -> str:
    """The implied cells as a Markdown table; ours beside them where any is reproduced."""
    ours = any(c["reproduced"] is not None for c in cells)
    head = "| dataset | model | metric | " + ("reproduced | " if ours else "")
    head += "implied by the published accuracy and F1 |" + (" delta |" if ours else "")
    lines = [head, "|---|---|---|" + ("---:|" * (3 if ours else 1))]
    for c in cells:
        implied = f"{c['implied']:.4f} [{c['low']:.4f}, {c['high']:.4f}]"
        if not ours:
            lines.append(f"| {c['dataset']} | {c['model']} | {c['metric']} | {implied} |")
            continue
        value = "-" if c["reproduced"] is None else f"{c['reproduced']:.4f}"
        delta = "-" if c["delta"] is None else f"{c['delta']:+.4f}"
        lines.append(f"| {c['dataset']} | {c['model']} | {c['metric']} | {value} | {implied} | {delta} |")
    return "\n".join(lines) + "\n"


def check_own_metrics(reproduced: Mapping[str, Mapping[str, Any]],
                      pixels: Mapping[str, Mapping[str, tuple[int, int]]], metrics_dir: Path) -> list[str]:
    """:func:`self_audit` of every reproduced metrics file under each protocol, against the test
    set's (P, N) (`pixels`: ``{dataset: {protocol: (P, N)}}``, counted in data/raw). Returns one
    line per file and protocol that passed; raises SkunetError on the first that did not, since
    that means our evaluation miscounts."""
    passed = []
    for dataset, models in reproduced.items():
        for model, content in models.items():
            for protocol, (p, n) in pixels[dataset].items():
                path = Path(metrics_dir) / dataset / f"{model}.json"
                try:
                    problems = self_audit(dataset, protocol, content.get(protocol, {}), (p, n))
                except AuditInputError as err:
                    raise SkunetError(f"{path}: {err}; run `dvc repro -f -s evaluate@{dataset}-{model}`") from None
                if problems:
                    raise SkunetError(f"{path}: self-audit failed, {problems[0]}: the evaluation miscounts;"
                                      f" fix it, then run `dvc repro -f -s evaluate@{dataset}-{model}`")
                passed.append(f"{dataset}/{model}/{protocol}")
    return passed


def compare_test_sets(pixels: Mapping[str, Mapping[str, tuple[int, int]]]) -> list[str]:
    """One line per dataset and protocol that mlscorecheck has counts for: whether the test set in
    data/raw (`pixels`: ``{dataset: {protocol: (P, N)}}``) has the vessel and background pixels
    that the audit of the published numbers assumes."""
    lines = []
    for dataset, by_protocol in pixels.items():
        for protocol, ours in by_protocol.items():
            where = "all" if protocol == "paper" else "fov"
            if where not in {a.pixels for a in AUDIT_ASSUMPTIONS[dataset]}:
                continue
            theirs = total_counts(dataset, where, 1)
            verdict = "the same as" if tuple(ours) == theirs else "NOT the same as"
            lines.append(f"Test set {dataset}/{protocol} in data/raw: P {ours[0]:,}, N {ours[1]:,}, {verdict} "
                         f"the counts the audit uses ({_source(dataset, where, 1)}: P {theirs[0]:,}, N {theirs[1]:,}).")
    return lines
