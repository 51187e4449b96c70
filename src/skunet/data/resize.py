"""Resize the raw images to the model's square input, `data/resized/<dataset>/`.

    train_images.npy  (N, S, S, 3) uint8     bilinear resize of the photographs
    train_labels.npy  (N, S, S)    uint8     {0, 1}: bilinear resize, re-binarised at 0.5
    train_fov.npy     (N, S, S)    uint8     {0, 1}, likewise
    test_images.npy, test_labels.npy, test_fov.npy   the same for the test split
    test_labels_native.npy, test_fov_native.npy      (M, H, W) {0, 1} at native resolution, for evaluation
    meta.json         ids in row order, sizes

The paper resizes (not pads) to a square, so the aspect ratio changes slightly (DRIVE 565x584).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from skunet.atomic import atomic_dir
from skunet.data.raw import load_manifest, read_png


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of an (H, W[, C]) uint8 image to (size, size[, C])."""
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a binary mask, re-binarised at 0.5: {0, 1} uint8."""
    resized = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    return (resized >= 0.5).astype(np.uint8)


def _stack(raw_dir: Path, ids: list[str], kind: str, size: int | None) -> np.ndarray:
    mode = "RGB" if kind == "images" else "L"
    rows = []
    for i in ids:
        pixels = read_png(raw_dir / kind / f"{i}.png", mode)
        if kind != "images":
            pixels = (pixels > 127).astype(np.uint8)
        if size is not None:
            pixels = resize_image(pixels, size) if kind == "images" else resize_mask(pixels, size)
        rows.append(pixels)
    return np.stack(rows)


def resize_dataset(raw_dir: Path, out_dir: Path, size: int) -> dict:
    """Write the resized train / test arrays and native test masks; return meta."""
    manifest = load_manifest(raw_dir)
    with atomic_dir(out_dir) as tmp:
        for split in ("train", "test"):
            ids = manifest[split]
            np.save(tmp / f"{split}_images.npy", _stack(raw_dir, ids, "images", size))
            np.save(tmp / f"{split}_labels.npy", _stack(raw_dir, ids, "labels", size))
            np.save(tmp / f"{split}_fov.npy", _stack(raw_dir, ids, "fov", size))
        np.save(tmp / "test_labels_native.npy", _stack(raw_dir, manifest["test"], "labels", None))
        np.save(tmp / "test_fov_native.npy", _stack(raw_dir, manifest["test"], "fov", None))
        meta = {
            "dataset": manifest["dataset"],
            "size": size,
            "native_size": manifest["native_size"],
            "train": manifest["train"],
            "test": manifest["test"],
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
