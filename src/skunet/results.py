"""Reading back what the evaluate stage wrote, for the comparison and its figures: the ROC curve
tables and a test image's predictions beside its image, label and FOV mask.

A file that is not what its stage writes is one line naming it and the `dvc repro -f` to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from skunet.atomic import damaged_output
from skunet.config import MODELS
from skunet.data.raw import load_manifest, read_png
from skunet.errors import reason


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
        "predictions": [(model, read_png(png, "L", f"evaluate@{dataset}-{model}") / 255.0)
                        for model, png in pngs.items() if png.is_file()],
    }
