"""Reading back what the evaluate and download stages wrote, for the comparison and its figures:
the ROC curve tables, a test image's predictions beside its image, label and FOV mask, each test
image's confusion counts and 8-bit score histograms (for the bootstrap), the pixels inside the
FOV masks (for the self-audit) and the second observer's counts (the human reference).

A file that is not what its stage writes is one line naming it and the `dvc repro -f -s` to run.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from skunet import metrics
from skunet.atomic import damaged_output
from skunet.config import MODELS, PROTOCOLS
from skunet.data.raw import load_manifest, read_png
from skunet.errors import reason
from skunet.uncertainty import level_histograms, model_intervals


def roc_curves(roc_dir: Path, dataset: str, reproduced: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{model: {"fpr", "tpr", "auc"}}`` for each model of `dataset` with a curve in `roc_dir`
    (``plots/roc``); the AUC is the metrics file's exact one (`reproduced`, as
    :func:`skunet.compare.load_reproduced` gives it), None where there is none."""
    curves = {}
    for model in MODELS:
        path = roc_dir / dataset / f"{model}.csv"
        if not path.is_file():
            continue
        try:
            fpr, tpr = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 1), unpack=True)
        except ValueError as err:
            raise damaged_output(path, f"not a ROC curve table ({reason(err)})", f"evaluate@{dataset}-{model}") from None
        auc = reproduced.get(dataset, {}).get(model, {}).get("paper", {}).get("auc")
        curves[model] = {"fpr": fpr, "tpr": tpr, "auc": auc}
    return curves


@dataclass(frozen=True)
class TestSet:
    """A dataset's test images as the download stage wrote them, each label read once: ids in the
    manifest's order, first-observer labels and FOV masks (bool), and the second observer's
    labels where every test image has one (else None)."""

    raw_dir: Path
    stems: list[str]
    labels: list[np.ndarray]
    fovs: list[np.ndarray]
    labels_2nd: list[np.ndarray] | None

    def scored(self, i: int, protocol: str) -> np.ndarray | None:
        """The pixels of test image `i` a protocol scores: all (`paper`, None) or the FOV's."""
        return self.fovs[i] if protocol == "fov" else None


def read_test_set(raw_dir: Path) -> TestSet:
    """The test images' labels and FOV masks (and second labels) under `raw_dir`."""
    manifest = load_manifest(raw_dir)
    stems = list(manifest["test"])
    stage = f"download@{raw_dir.name}"

    def masks(kind: str) -> list[np.ndarray]:
        return [read_png(raw_dir / kind / f"{stem}.png", "L", stage) > 127 for stem in stems]

    second = set(stems) <= set(manifest.get("second_observer", []))
    return TestSet(raw_dir, stems, masks("labels"), masks("fov"), masks("labels_2nd") if second else None)


def first_test_image(test: TestSet, predictions_dir: Path) -> dict[str, Any]:
    """The first test image with each model's probability map from `predictions_dir`
    (``predictions/<dataset>``): ``stem``, ``image`` (RGB), ``label`` and ``fov`` (bool),
    ``predictions`` (``[(model, probability in [0, 1])]``, models without predictions left out)."""
    dataset, stem = test.raw_dir.name, test.stems[0]
    pngs = {model: predictions_dir / model / f"{stem}.png" for model in MODELS}
    return {
        "stem": stem,
        "image": read_png(test.raw_dir / "images" / f"{stem}.png", "RGB", f"download@{dataset}"),
        "label": test.labels[0],
        "fov": test.fovs[0],
        "predictions": [(model, metrics.uint8_to_probability(read_png(png, "L", f"evaluate@{dataset}-{model}")))
                        for model, png in pngs.items() if png.is_file()],
    }


def per_image_counts(per_image_csv: Path, stems: list[str], stage: str) -> dict[str, np.ndarray]:
    """``{protocol: (n_images, 4) tp, fp, fn, tn}`` from the evaluate stage's per-image table, in
    the order of `stems`."""
    try:
        with per_image_csv.open(newline="") as fh:
            rows = {(row["protocol"], row["stem"]): [int(row[k]) for k in metrics.COUNT_NAMES]
                    for row in csv.DictReader(fh)}
        return {p: np.array([rows[p, stem] for stem in stems], dtype=np.int64) for p in PROTOCOLS}
    except (OSError, KeyError, ValueError) as err:
        raise damaged_output(per_image_csv, f"not a per-image table of {len(stems)} test images "
                             f"({reason(err)})", stage) from None


def score_histograms(test: TestSet, model_dir: Path) -> dict[str, np.ndarray]:
    """``{protocol: (n_images, 2, 256)}``: per test image, how many background (row 0) and vessel
    (row 1) pixels the prediction PNGs in `model_dir` give each 8-bit level, over the pixels the
    protocol scores."""
    stage = f"evaluate@{test.raw_dir.name}-{model_dir.name}"
    hists: dict[str, list[np.ndarray]] = {p: [] for p in PROTOCOLS}
    for i, (stem, label) in enumerate(zip(test.stems, test.labels)):
        level = read_png(model_dir / f"{stem}.png", "L", stage)
        if level.shape != label.shape:
            raise damaged_output(model_dir / f"{stem}.png", f"{level.shape} where the label is {label.shape}", stage)
        for protocol in PROTOCOLS:
            hists[protocol].append(level_histograms(label, level, test.scored(i, protocol)))
    return {p: np.stack(h) for p, h in hists.items()}


def test_pixels(test: TestSet) -> dict[str, tuple[int, int]]:
    """``{protocol: (P, N)}``: the first observer's vessel and background pixels over the test
    images, all of them (`paper`) or those inside the FOV (`fov`)."""
    out = {}
    for protocol in PROTOCOLS:
        scored = [label if test.scored(i, protocol) is None else label[test.fovs[i]]
                  for i, label in enumerate(test.labels)]
        vessel = sum(int(np.count_nonzero(s)) for s in scored)
        out[protocol] = (vessel, sum(s.size for s in scored) - vessel)
    return out


def second_observer(test: TestSet) -> dict[str, dict[str, float | int]] | None:
    """The second observer's tracing scored against the first, pooled over the test images, under
    each protocol: ``{protocol: {f1, accuracy, sensitivity, specificity, precision, tp, fp, fn,
    tn}}`` (a binary map: no AUC); None when some test image has no second tracing."""
    if test.labels_2nd is None:
        return None
    names = ("f1", "accuracy", "sensitivity", "specificity", "precision")
    out = {}
    for protocol in PROTOCOLS:
        keep = [np.ones_like(label) if test.scored(i, protocol) is None else test.fovs[i]
                for i, label in enumerate(test.labels)]
        counts = metrics.confusion_counts(np.concatenate([l[k] for l, k in zip(test.labels, keep)]),
                                          np.concatenate([s[k] for s, k in zip(test.labels_2nd, keep)]))
        scores = metrics.scores_from_counts(counts)
        out[protocol] = {**{k: scores[k] for k in names}, **counts}
    return out


def bootstrap_intervals(root: Path, tests: Mapping[str, TestSet], reproduced: Mapping[str, Mapping[str, Any]],
                        ranking: tuple[str, ...], boot: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{protocol: {dataset: skunet.uncertainty.model_intervals(...)}}`` for the models each
    dataset has in `reproduced`, from the evaluate stage's per-image tables and prediction PNGs
    under `root`; `boot` is params.yaml's ``compare.bootstrap``."""
    out: dict[str, dict[str, dict[str, Any]]] = {p: {} for p in PROTOCOLS}
    for dataset, models in reproduced.items():
        test = tests[dataset]
        counts = {m: per_image_counts(root / "plots" / "per_image" / dataset / f"{m}.csv", test.stems,
                                      f"evaluate@{dataset}-{m}") for m in models}
        hists = {m: score_histograms(test, root / "predictions" / dataset / m) for m in models}
        for protocol in PROTOCOLS:
            out[protocol][dataset] = model_intervals(
                {m: c[protocol] for m, c in counts.items()}, {m: h[protocol] for m, h in hists.items()},
                ranking, n_resamples=boot["n_resamples"], seed=boot["seed"], confidence_level=boot["confidence"])
    return out
