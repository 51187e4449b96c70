"""Reading back what the evaluate and download stages wrote, for the comparison and its figures:
the ROC curve tables, a test image's predictions beside its image, label and FOV mask, each test
image's confusion counts and 8-bit score histograms (for the bootstrap), the pixels inside the
FOV masks (for the self-audit) and the second observer's counts (the human reference).

A file that is not what its stage writes is one line naming it and the `dvc repro -f` to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import csv

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


def first_test_image(raw_dir: Path, predictions_dir: Path) -> dict[str, Any]:
    """The first test image of the dataset in `raw_dir` (``data/raw/<dataset>``) with each model's
    probability map from `predictions_dir` (``predictions/<dataset>``): ``stem``, ``image``
    (RGB), ``label`` and ``fov`` (bool), ``predictions`` (``[(model, probability in [0, 1])]``,
    models without predictions left out)."""
    dataset = raw_dir.name
    stage = f"download@{dataset}"
    stem = load_manifest(raw_dir)["test"][0]
    pngs = {model: predictions_dir / model / f"{stem}.png" for model in MODELS}
    return {
        "stem": stem,
        "image": read_png(raw_dir / "images" / f"{stem}.png", "RGB", stage),
        "label": read_png(raw_dir / "labels" / f"{stem}.png", "L", stage) > 127,
        "fov": read_png(raw_dir / "fov" / f"{stem}.png", "L", stage) > 127,
        "predictions": [(model, metrics.uint8_to_probability(read_png(png, "L", f"evaluate@{dataset}-{model}")))
                        for model, png in pngs.items() if png.is_file()],
    }


def test_stems(raw_dir: Path) -> list[str]:
    """The test images of the dataset in `raw_dir`, in the manifest's order."""
    return list(load_manifest(raw_dir)["test"])


def _label_and_fov(raw_dir: Path, stem: str, labels: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    stage = f"download@{raw_dir.name}"
    return (read_png(raw_dir / labels / f"{stem}.png", "L", stage) > 127,
            read_png(raw_dir / "fov" / f"{stem}.png", "L", stage) > 127)


def _mask(fov: np.ndarray, protocol: str) -> np.ndarray | None:
    """The pixels a protocol scores: all of them (`paper`) or those inside the FOV (`fov`)."""
    return fov if protocol == "fov" else None


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


def score_histograms(raw_dir: Path, model_dir: Path, stems: list[str]) -> dict[str, np.ndarray]:
    """``{protocol: (n_images, 2, 256)}``: per test image, how many background (row 0) and vessel
    (row 1) pixels the prediction PNGs in `model_dir` give each 8-bit level, over the pixels the
    protocol scores."""
    stage = f"evaluate@{raw_dir.name}-{model_dir.name}"
    hists: dict[str, list[np.ndarray]] = {p: [] for p in PROTOCOLS}
    for stem in stems:
        label, fov = _label_and_fov(raw_dir, stem)
        level = read_png(model_dir / f"{stem}.png", "L", stage)
        if level.shape != label.shape:
            raise damaged_output(model_dir / f"{stem}.png", f"{level.shape} where the label is {label.shape}", stage)
        for protocol in PROTOCOLS:
            hists[protocol].append(level_histograms(label, level, _mask(fov, protocol)))
    return {p: np.stack(h) for p, h in hists.items()}


def test_pixels(raw_dir: Path, stems: list[str]) -> dict[str, tuple[int, int]]:
    """``{protocol: (P, N)}``: the first observer's vessel and background pixels over the test
    images, all of them (`paper`) or those inside the FOV (`fov`)."""
    totals = {p: [0, 0] for p in PROTOCOLS}
    for stem in stems:
        label, fov = _label_and_fov(raw_dir, stem)
        for protocol in PROTOCOLS:
            keep = _mask(fov, protocol)
            vessel = label if keep is None else label & keep
            totals[protocol][0] += int(np.count_nonzero(vessel))
            totals[protocol][1] += int(label.size if keep is None else np.count_nonzero(keep)) - int(np.count_nonzero(vessel))
    return {p: (v, b) for p, (v, b) in totals.items()}


def second_observer(raw_dir: Path, stems: list[str]) -> dict[str, dict[str, float | int]] | None:
    """The second observer's tracing scored against the first, pooled over the test images, under
    each protocol: ``{protocol: {f1, accuracy, sensitivity, specificity, precision, tp, fp, fn,
    tn}}`` (a binary map: no AUC); None when some test image has no second tracing."""
    if not set(stems) <= set(load_manifest(raw_dir).get("second_observer", [])):
        return None
    totals = {p: dict.fromkeys(metrics.COUNT_NAMES, 0) for p in PROTOCOLS}
    for stem in stems:
        label, fov = _label_and_fov(raw_dir, stem)
        second, _ = _label_and_fov(raw_dir, stem, labels="labels_2nd")
        for protocol in PROTOCOLS:
            keep = _mask(fov, protocol)
            truth, guess = (label, second) if keep is None else (label[keep], second[keep])
            for key, value in metrics.confusion_counts(truth, guess).items():
                totals[protocol][key] += value
    names = ("f1", "accuracy", "sensitivity", "specificity", "precision")
    out = {}
    for protocol, counts in totals.items():
        scores = metrics.scores_from_counts(counts)
        out[protocol] = {**{k: scores[k] for k in names}, **counts}
    return out


def bootstrap_intervals(root: Path, reproduced: Mapping[str, Mapping[str, Any]], ranking: tuple[str, ...],
                        boot: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{protocol: {dataset: skunet.uncertainty.model_intervals(...)}}`` for the models each
    dataset has in `reproduced`, from the evaluate stage's per-image tables and prediction PNGs
    under `root`; `boot` is params.yaml's ``compare.bootstrap``."""
    out: dict[str, dict[str, dict[str, Any]]] = {p: {} for p in PROTOCOLS}
    for dataset, models in reproduced.items():
        raw = root / "data" / "raw" / dataset
        stems = test_stems(raw)
        counts = {m: per_image_counts(root / "plots" / "per_image" / dataset / f"{m}.csv", stems,
                                      f"evaluate@{dataset}-{m}") for m in models}
        hists = {m: score_histograms(raw, root / "predictions" / dataset / m, stems) for m in models}
        for protocol in PROTOCOLS:
            out[protocol][dataset] = model_intervals(
                {m: c[protocol] for m, c in counts.items()}, {m: h[protocol] for m, h in hists.items()},
                ranking, n_resamples=boot["n_resamples"], seed=boot["seed"], confidence_level=boot["confidence"])
    return out
