"""The canonical raw layout, `data/raw/<dataset>/`, built from the official archives.

    images/<id>.png      the photograph, RGB, native resolution
    labels/<id>.png      first observer, 0 / 255
    labels_2nd/<id>.png  second observer, 0 / 255, where the archive has one
    fov/<id>.png         field-of-view mask, 0 / 255 (derived for CHASE_DB1, see below)
    manifest.json        ids of the train / test split, archive checksums, how the FOV was made

Splits: DRIVE 21-40 train, 01-20 test (official). CHASE_DB1 has no official split; sorted by name
(Image_01L, Image_01R, ...), the first 20 train and the last 8 test, as the paper says.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from skunet.atomic import atomic_dir, damaged_output, missing_output, read_json
from skunet.data.sources import archive_members
from skunet.errors import SkunetError

# Entry patterns: matched anywhere in the archive, so the official zips, the Dropbox
# training.zip / test.zip pair and re-packs with another top folder all normalise the same way.
_PATTERNS = {
    "drive": {
        "images": re.compile(r"(?:^|/)(?:training|test)/images/(\d\d)_(?:training|test)\.tif$"),
        "labels": re.compile(r"(?:^|/)1st_manual/(\d\d)_manual1\.gif$"),
        "labels_2nd": re.compile(r"(?:^|/)2nd_manual/(\d\d)_manual2\.gif$"),
        "fov": re.compile(r"(?:^|/)mask/(\d\d)_(?:training|test)_mask\.gif$"),
    },
    "chase": {
        "images": re.compile(r"(?:^|/)(Image_\d\d[LR])\.jpg$"),
        "labels": re.compile(r"(?:^|/)(Image_\d\d[LR])_1stHO\.png$"),
        "labels_2nd": re.compile(r"(?:^|/)(Image_\d\d[LR])_2ndHO\.png$"),
    },
}
_EXPECTED = {"drive": 40, "chase": 28}
# (H, W) of every photograph, label, mask and second-observer label of the official releases; an
# entry of another size (a re-saved or foreign file) would otherwise be resized with the rest.
NATIVE_SIZE = {"drive": (584, 565), "chase": (960, 999)}
CHASE_TRAIN = 20
# CHASE_DB1 FOV: the fundus is bright against a black surround; JPEG noise in the surround stays
# below this grey level (checked on all 28 images), and hole filling closes dark vessels / fovea.
CHASE_FOV_THRESHOLD = 20


@dataclass
class RawSample:
    image: np.ndarray  # (H, W, 3) uint8
    label: np.ndarray  # (H, W) bool
    fov: np.ndarray  # (H, W) bool
    label_2nd: np.ndarray | None = None


@dataclass
class RawDataset:
    name: str
    train: list[str]
    test: list[str]
    samples: dict[str, RawSample]
    fov_method: str
    archives: list[dict] = field(default_factory=list)


def decode_image(name: str, data: bytes, mode: str) -> np.ndarray:
    """Decode image bytes to an array (mode 'RGB' or 'L'); a clear error names the entry."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert(mode))
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise SkunetError(f"{name}: unreadable image ({err}); the archive is damaged: replace it") from None


def check_size(name: str | Path, pixels: np.ndarray, expected: tuple[int, int], remedy: str) -> None:
    """Raise SkunetError naming `name` when `pixels` is not `expected` (H, W) in size."""
    if pixels.shape[:2] != tuple(expected):
        height, width = pixels.shape[:2]
        raise SkunetError(f"{name}: {height} x {width} pixels (H x W), expected {expected[0]} x "
                          f"{expected[1]}; {remedy}")


def binarise(grey: np.ndarray) -> np.ndarray:
    """0/255 label or mask (GIF palette, 1-bit PNG) to bool; > 127 also handles the DRIVE
    2nd_manual palette colours (4,2,4) and (252,254,252)."""
    return grey > 127


def derive_fov(image: np.ndarray, threshold: int = CHASE_FOV_THRESHOLD) -> np.ndarray:
    """FOV mask of a fundus photograph without one: grey > threshold, holes filled, largest blob."""
    grey = image.max(axis=2)
    mask = ndimage.binary_opening(grey > threshold, iterations=2)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, index=range(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return ndimage.binary_fill_holes(mask)


def read_archives(dataset: str, archives: list[Path], native_size: tuple[int, int] | None = None) -> RawDataset:
    """Decode the needed entries of the dataset's archives into a RawDataset; every one must be
    `native_size` (H, W), by default the official release's (NATIVE_SIZE)."""
    patterns = _PATTERNS[dataset]
    size = native_size or NATIVE_SIZE[dataset]
    found: dict[str, dict[str, np.ndarray]] = {kind: {} for kind in patterns}

    def needed(name: str) -> bool:
        return any(pattern.search(name) for pattern in patterns.values())

    for archive in archives:
        for name, data in archive_members(archive, needed):
            for kind, pattern in patterns.items():
                match = pattern.search(name)
                if match:
                    where = f"{archive.name}:{name}"
                    pixels = decode_image(where, data, "RGB" if kind == "images" else "L")
                    check_size(where, pixels, size, f"not the official {dataset} release: replace the archive")
                    found[kind][match.group(1)] = pixels if kind == "images" else binarise(pixels)
    ids = sorted(found["images"])
    if len(ids) != _EXPECTED[dataset]:
        raise SkunetError(
            f"{', '.join(a.name for a in archives)}: found {len(ids)} {dataset} images, expected"
            f" {_EXPECTED[dataset]}; the archive is incomplete: get the full release"
        )
    for kind in ("labels", "fov") if dataset == "drive" else ("labels",):
        missing = [i for i in ids if i not in found[kind]]
        if missing:
            raise SkunetError(
                f"{', '.join(a.name for a in archives)}: no {kind} for image(s) {', '.join(missing)};"
                " the archive is incomplete: get the full release"
            )
    samples = {}
    for i in ids:
        image = found["images"][i]
        fov = found["fov"][i] if dataset == "drive" else derive_fov(image)
        samples[i] = RawSample(image, found["labels"][i], fov, found["labels_2nd"].get(i))
    if dataset == "drive":
        train = [i for i in ids if int(i) >= 21]
        test = [i for i in ids if int(i) <= 20]
        fov_method = "official DRIVE masks"
    else:
        train, test = ids[:CHASE_TRAIN], ids[CHASE_TRAIN:]
        fov_method = (
            f"derived: max(R,G,B) > {CHASE_FOV_THRESHOLD}, opening, largest component, holes filled"
            " (CHASE_DB1 ships no FOV masks)"
        )
    return RawDataset(dataset, train, test, samples, fov_method)


def _save_png(path: Path, array: np.ndarray) -> None:
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    Image.fromarray(array).save(path, compress_level=1)


def write_raw(raw: RawDataset, out_dir: Path) -> None:
    """Write the canonical layout into a temporary folder, then move it to `out_dir`."""
    with atomic_dir(out_dir) as tmp:
        for kind in ("images", "labels", "labels_2nd", "fov"):
            (tmp / kind).mkdir()
        for i, s in raw.samples.items():
            _save_png(tmp / "images" / f"{i}.png", s.image)
            _save_png(tmp / "labels" / f"{i}.png", s.label)
            _save_png(tmp / "fov" / f"{i}.png", s.fov)
            if s.label_2nd is not None:
                _save_png(tmp / "labels_2nd" / f"{i}.png", s.label_2nd)
        first = next(iter(raw.samples.values()))
        manifest = {
            "dataset": raw.name,
            "train": raw.train,
            "test": raw.test,
            "native_size": list(first.label.shape),
            "fov": raw.fov_method,
            "second_observer": sorted(i for i, s in raw.samples.items() if s.label_2nd is not None),
            "archives": raw.archives,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


MANIFEST_KEYS = ("dataset", "train", "test", "native_size")


def load_manifest(raw_dir: Path) -> dict:
    return read_json(raw_dir / "manifest.json", f"download@{raw_dir.name}", keys=MANIFEST_KEYS)


def read_png(path: Path, mode: str, stage: str) -> np.ndarray:
    """The image `stage` wrote at `path` (mode 'RGB' or 'L'); missing or unreadable: one line
    naming the file and the stage to re-run."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert(mode))
    except FileNotFoundError:
        raise missing_output(path, stage) from None
    except (UnidentifiedImageError, OSError) as err:
        raise damaged_output(path, f"unreadable image ({err})", stage) from None
