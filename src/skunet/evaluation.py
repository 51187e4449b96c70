"""Predict the test images and score them under the `paper` and `fov` protocols.

The model sees each test image at its input size; the probability map is resized back to native
resolution (bilinear) and saved as an 8-bit PNG (value = round(255 x probability)). The metrics
are computed from exactly those PNGs (probability = value / 255), pooled over all test pixels
(see metrics.py): so anyone holding the published PNGs gets the same numbers (`skunet evaluate`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from skunet import metrics
from skunet.atomic import atomic_dir, atomic_file, read_array, read_json


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 2,
            progress: bool = True) -> np.ndarray:
    """Vessel probabilities (M, S, S) float32 for uint8 images (M, S, S, 3)."""
    model.eval()
    out = []
    with tqdm(range(0, len(images), batch_size), desc="predict", leave=False, disable=not progress) as bar:
        for start in bar:
            x = torch.from_numpy(images[start : start + batch_size]).to(device)
            x = x.permute(0, 3, 1, 2).float().div_(255)
            out.append(torch.sigmoid(model(x).float())[:, 0].cpu().numpy())
    return np.concatenate(out)


def to_native(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a probability map to (H, W)."""
    h, w = shape
    return np.clip(cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def save_level_png(level: np.ndarray, path: Path) -> None:
    """An 8-bit probability map as the pipeline publishes it (the evaluate stage and `skunet
    predict` alike, so the same map gives the same bytes)."""
    Image.fromarray(level).save(path, format="PNG")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_file(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def evaluate_model(
    model: torch.nn.Module,
    resized_dir: Path,
    predictions_dir: Path,
    metrics_path: Path,
    plots_dir: Path,
    name: str,
    threshold: float,
    curve_points: int,
    device: torch.device,
) -> dict[str, dict[str, float | int]]:
    """Predict the test images, then :func:`write_evaluation`."""
    stage = f"resize@{resized_dir.name}"
    images = read_array(resized_dir / "test_images.npy", stage, shape=("N", "S", "S", 3))
    labels = read_array(resized_dir / "test_labels_native.npy", stage, shape=(len(images), "H", "W"))
    fovs = read_array(resized_dir / "test_fov_native.npy", stage, shape=labels.shape)
    meta = read_json(resized_dir / "meta.json", stage, keys=("test",))
    probs = [to_native(p, labels.shape[1:]) for p in predict(model, images, device)]
    levels = [metrics.probability_to_uint8(p) for p in probs]  # what the PNGs hold
    with atomic_dir(predictions_dir) as tmp:
        for stem, level in zip(meta["test"], levels):
            save_level_png(level, tmp / f"{stem}.png")
    published = [metrics.uint8_to_probability(level) for level in levels]  # and so what is scored
    return write_evaluation(published, list(labels), list(fovs), meta["test"], metrics_path, plots_dir, name,
                            threshold, curve_points, levels)


# The plots write_evaluation writes, each `plots_dir`/<kind>/<name>.csv.
PLOT_KINDS = ("per_image", "roc", "pr")


def write_evaluation(
    probs: list[np.ndarray],
    labels: list[np.ndarray],
    fovs: list[np.ndarray],
    stems: list[str],
    metrics_path: Path,
    plots_dir: Path,
    name: str,
    threshold: float,
    curve_points: int,
    levels: list[np.ndarray] | None = None,
) -> dict[str, dict[str, float | int]]:
    """Score native-resolution probability maps against their labels, as they are: the metrics
    JSON (both protocols), the per-image table and the ROC / PR curves (`plots_dir`/roc|pr|per_image/
    `name`.csv). `levels`: the maps' 8-bit levels when the caller has them already."""
    result = metrics.evaluate(labels, probs, fovs, threshold)
    with atomic_file(metrics_path) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")

    _write_csv(plots_dir / "per_image" / f"{name}.csv",
               metrics.per_image_metrics(labels, probs, fovs, stems, threshold))
    # Curves for plots at 8-bit resolution (what the PNGs hold; histogram-fast).
    y = np.concatenate([np.asarray(label).ravel() for label in labels])
    levels = levels if levels is not None else [metrics.probability_to_uint8(p) for p in probs]
    all_levels = np.concatenate([level.ravel() for level in levels])
    for kind, curve in (("roc", metrics.roc_curve_points), ("pr", metrics.pr_curve_points)):
        points = curve(y, all_levels, curve_points)
        points["threshold"] = [t / 255 for t in points["threshold"]]
        _write_csv(plots_dir / kind / f"{name}.csv", metrics.curve_rows(points))
    return result
