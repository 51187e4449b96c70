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

from skunet.atomic import atomic_dir, damaged_output, save_array
from skunet.data.raw import NATIVE_SIZE, check_size, load_manifest, read_png


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of an (H, W[, C]) uint8 image to (size, size[, C])."""
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a binary mask, re-binarised at 0.5: {0, 1} uint8."""
    resized = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    return (resized >= 0.5).astype(np.uint8)


def _stack(raw_dir: Path, ids: list[str], kind: str, size: int | None, native: tuple[int, int]) -> np.ndarray:
    mode = "RGB" if kind == "images" else "L"
    stage = f"download@{raw_dir.name}"
    rows = []
    for i in ids:
        path = raw_dir / kind / f"{i}.png"
        pixels = read_png(path, mode, stage)
        check_size(path, pixels, native, f"re-run `dvc repro -f -s {stage}`")
        if kind != "images":
            pixels = (pixels > 127).astype(np.uint8)
        if size is not None:
            pixels = resize_image(pixels, size) if kind == "images" else resize_mask(pixels, size)
        rows.append(pixels)
    return np.stack(rows)


def resize_dataset(raw_dir: Path, out_dir: Path, size: int, native_size: tuple[int, int] | None = None) -> dict:
    """Write the resized train / test arrays and native test masks; return meta. Every raw image
    must be `native_size` (H, W), by default the official release's (NATIVE_SIZE)."""
    manifest = load_manifest(raw_dir)
    if native_size is None and manifest["dataset"] not in NATIVE_SIZE:
        raise damaged_output(raw_dir / "manifest.json", f"unknown dataset {manifest['dataset']!r}",
                             f"download@{raw_dir.name}")
    native = native_size or NATIVE_SIZE[manifest["dataset"]]
    with atomic_dir(out_dir) as tmp:
        for split in ("train", "test"):
            ids = manifest[split]
            for kind in ("images", "labels", "fov"):
                save_array(tmp / f"{split}_{kind}.npy", _stack(raw_dir, ids, kind, size, native))
        save_array(tmp / "test_labels_native.npy", _stack(raw_dir, manifest["test"], "labels", None, native))
        save_array(tmp / "test_fov_native.npy", _stack(raw_dir, manifest["test"], "fov", None, native))
        meta = {
            "dataset": manifest["dataset"],
            "size": size,
            "native_size": list(native),
            "train": manifest["train"],
            "test": manifest["test"],
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
