"""Segment your own fundus images with a trained checkpoint (`skunet predict`).

Each image goes through the pipeline's own code: read as RGB (a grey image's one channel three
times, as the augment stage's grey samples), resized to the network's input side with
:func:`skunet.data.resize.resize_image`, predicted by :func:`skunet.evaluation.predict` (eval mode,
in batches), the probability map resized back to the image's size by
:func:`skunet.evaluation.to_native` and written as the evaluate stage writes it
(:func:`skunet.evaluation.save_level_png`). So the DRIVE test images give the evaluate stage's
prediction PNGs byte for byte. Per image it writes ``<stem>_prob.png`` (8-bit probability),
``<stem>_mask.png`` (0 / 255, vessel where probability > the threshold) and, with ``--fov``,
``<stem>_fov.png``, derived as the pipeline derives CHASE_DB1's (:func:`skunet.data.raw.derive_fov`),
and with ``--panel``, ``<stem>_panel.png``: the image, the probability and the mask side by side.

A file that cannot be segmented (unreadable, empty, not an image, 16-bit, with an alpha or fourth
channel, too small) is one line naming it and what to do; the others are still done, and the
command exits non-zero at the end. Nothing partial is left for any image: its files are written
beside their places and moved into place together.
"""

from __future__ import annotations

import errno
import logging
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from skunet import metrics
from skunet.atomic import atomic_file
from skunet.checkpoints import load_checkpoint
from skunet.data.raw import derive_fov
from skunet.data.resize import resize_image
from skunet.errors import SkunetError, reason
from skunet.evaluation import predict, save_level_png, to_native

log = logging.getLogger(__name__)

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif")
MIN_SIDE = 32  # below this a fundus image holds no vessel the network could find
# 8-bit modes PIL reads without losing anything: colour, grey, palette (GIF), black and white
EIGHT_BIT = {"RGB": "RGB", "L": "L", "P": "RGB", "1": "L"}
# The files written per image: <stem>_<kind>.png
OUTPUT_KINDS = ("prob", "mask", "fov", "panel")


@dataclass(frozen=True)
class Prediction:
    """What `skunet predict` wrote for one image, or why it wrote nothing."""

    source: Path
    outputs: tuple[Path, ...] = ()
    error: str | None = None


def image_files(inputs: Sequence[Path], out_dir: Path | None = None) -> list[Path]:
    """The image files named by `inputs` (files, or folders searched recursively), sorted within
    each folder; a missing input or a folder without images is an error. Left out: what this
    command wrote into `out_dir` before (<stem>_prob.png and the like), never a user's own image
    there."""
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            ours = [p for p in found if out_dir is not None and _written_here(p, out_dir)]
            if ours:
                log.info("%s: %d file(s) left out, the results of an earlier `skunet predict` into --out %s", item,
                         len(ours), out_dir)
            found = [p for p in found if p not in ours]
            if not found:
                raise SkunetError(f"{item}: no {', '.join(SUFFIXES)} files in this folder"
                                  + (" besides this command's own results" if ours else ""))
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise SkunetError(f"{item}: no such file or folder")
    unique: dict[Path, Path] = {}
    for file in files:  # a file named twice (by two paths, or a link) is done once
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


def _written_here(path: Path, out_dir: Path) -> bool:
    """Whether `path` is one of the files `skunet predict` writes into `out_dir`: directly in it,
    named <stem>_<kind>.png, beside the <stem>_prob.png and <stem>_mask.png it always writes (a
    user's own `vessel_mask.png` there is an image to segment)."""
    if path.resolve().parent != out_dir.resolve():
        return False
    stem = next((path.name.removesuffix(f"_{kind}.png") for kind in OUTPUT_KINDS
                 if path.name.endswith(f"_{kind}.png")), None)
    return stem is not None and all((path.parent / f"{stem}_{kind}.png").is_file() for kind in ("prob", "mask"))


def stored_wide(img: Image.Image) -> bool:
    """Whether `img` (opened, not yet loaded) is stored with 16 bits a channel: the raw mode of its
    data (PNG's "RGB;16B", TIFF's "RGB;16N") says so, where its mode does not."""
    for tile in img.tile or []:
        args = tile[3] if len(tile) > 3 else None
        raw = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw, str) and ";16" in raw:
            return True
    return False


def read_image(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, or SkunetError saying why it cannot be segmented."""
    try:
        with Image.open(path) as opened:
            if getattr(opened, "n_frames", 1) > 1:
                raise SkunetError(f"{path}: {opened.n_frames} frames; give one image per file")
            if stored_wide(opened):  # PIL may read 16 bits a channel as 8, silently dropping the low bits
                kind = "grey" if len(opened.getbands()) == 1 or opened.mode.startswith("I") else "colour"
                raise SkunetError(f"{path}: a 16-bit {kind} image; save it as an 8-bit RGB or grey image first")
            img = ImageOps.exif_transpose(opened)  # as a viewer shows it (a camera's JPEG may be stored turned)
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                raise SkunetError(f"{path}: a {mode} image (16-bit or more per channel); save it as an "
                                  "8-bit RGB or grey image first")
            if mode == "CMYK":  # a print-ready JPEG
                raise SkunetError(f"{path}: a CMYK image (for print); convert it to 8-bit RGB first")
            if mode not in EIGHT_BIT:
                raise SkunetError(f"{path}: a {mode} image ({len(img.getbands())} channels: "
                                  f"{''.join(img.getbands())}); save it as 8-bit RGB or grey, without alpha")
            pixels = np.asarray(img.convert(EIGHT_BIT[mode]))
    except Image.DecompressionBombError as err:
        raise SkunetError(f"{path}: too large to read safely ({reason(err)}); downscale it first") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise SkunetError(f"{path}: not an image this tool reads ({reason(err)}); give a PNG, JPEG, "
                          "TIFF or GIF file") from None
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    height, width = pixels.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise SkunetError(f"{path}: {width} x {height} px is too small to segment (at least "
                          f"{MIN_SIDE} px a side); give the full-resolution fundus image")
    return pixels


def output_names(files: Sequence[Path]) -> dict[Path, str]:
    """Each file's output stem: its own, unless another input shares it. Files that share a stem
    are named by their path below their common folder with '__' for '/' (x/a.png -> x__a); where
    even that clashes (01.png beside 01.tif, or an input whose own stem is x__a), with the suffix
    too (x__a_png); where that still clashes, with a number (x__a_png_2). No two files get one name,
    as one's results would overwrite the other's."""
    by_stem: dict[str, list[Path]] = {}
    for file in files:
        by_stem.setdefault(file.stem, []).append(file)
    names = {group[0]: stem for stem, group in by_stem.items() if len(group) == 1}
    taken = set(names.values())
    for group in (g for g in by_stem.values() if len(g) > 1):
        names.update(_renamed(group, taken))
    return {file: names[file] for file in files}


def _renamed(group: list[Path], taken: set[str]) -> dict[Path, str]:
    """Names for files sharing one stem, none in `taken` (which they are added to)."""
    common = Path(os.path.commonpath([str(f.resolve().parent) for f in group]))
    paths = [f.resolve().relative_to(common) for f in group]
    suffixed = ["__".join(p.parts).replace(".", "_") for p in paths]
    for candidate in (["__".join(p.with_suffix("").parts) for p in paths], suffixed):
        if len(set(candidate)) == len(candidate) and not taken & set(candidate):
            taken.update(candidate)
            return dict(zip(group, candidate))
    names = {}
    for file, base in zip(group, suffixed):
        name, number = base, 1
        while name in taken:
            number += 1
            name = f"{base}_{number}"
        taken.add(name)
        names[file] = name
    return names


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def segment(
    checkpoint: Path,
    inputs: Sequence[Path],
    out_dir: Path,
    *,
    threshold: float = 0.5,
    fov: bool = False,
    panel: bool = False,
    batch_size: int = 2,
    device: torch.device | None = None,
) -> list[Prediction]:
    """Segment every image named by `inputs` with `checkpoint` into `out_dir`; returns one
    :class:`Prediction` per image, an image that could not be segmented with its `error`."""
    if not 0 < threshold < 1:
        raise SkunetError(f"--threshold {threshold}: give a probability in (0, 1)")
    device = device or (torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    model, payload = load_checkpoint(checkpoint, device)
    size = payload.get("input_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < MIN_SIDE:
        raise SkunetError(f"{checkpoint}: records no usable input size ({size!r}); re-run its train stage"
                          " (`dvc repro -f -s train@<dataset>-<model>`)")
    files = image_files(inputs, out_dir)
    made = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_file(out_dir / ".skunet-write-test"):
            pass
        (out_dir / ".skunet-write-test").unlink()
    except (OSError, SkunetError) as err:
        raise SkunetError(f"{out_dir}: cannot write here ({_why(err)}); choose another --out") from None
    names = output_names(files)
    log.info("segmenting %d image(s) with %s (%s at %d px) on %s", len(files), checkpoint, payload["model"],
             size, device)
    for path, name in names.items():
        if name != path.stem:
            log.info("%s: written as %s_*.png, as another input shares its stem %s", path, name, path.stem)
    results: list[Prediction] = []
    with tqdm(total=len(files), desc="segment", unit="image") as bar:
        for chunk in _batches(files, batch_size):
            readable = []
            for path in chunk:
                try:
                    readable.append((path, read_image(path)))
                except SkunetError as err:
                    results.append(Prediction(path, error=str(err)))
            if readable:
                stacked = np.stack([resize_image(pixels, size) for _, pixels in readable])
                probs = predict(model, stacked, device, batch_size, progress=False)
                for (path, pixels), prob in zip(readable, probs):
                    results.append(_write(path, pixels, to_native(prob, pixels.shape[:2]), out_dir / names[path],
                                          threshold, fov, panel))
            bar.update(len(chunk))
    if made and not any(out_dir.iterdir()):  # nothing could be segmented: no empty folder left
        out_dir.rmdir()
    return results


def side_by_side(pixels: np.ndarray, level: np.ndarray, mask: np.ndarray, gap: int = 8) -> np.ndarray:
    """The image, its probability map and its mask side by side (RGB, white gaps)."""
    grey = [np.repeat(a[..., None], 3, axis=2) for a in (level, mask)]
    white = np.full((pixels.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([pixels, white, grey[0], white, grey[1]], axis=1)


def _write(path: Path, pixels: np.ndarray, prob: np.ndarray, stem: Path, threshold: float, fov: bool,
           panel: bool = False) -> Prediction:
    """One image's files, all moved into place together or none."""
    level = metrics.probability_to_uint8(prob)
    mask = ((metrics.uint8_to_probability(level) > threshold) * 255).astype(np.uint8)
    outputs = {stem.with_name(f"{stem.name}_prob.png"): level, stem.with_name(f"{stem.name}_mask.png"): mask}
    if fov:
        outputs[stem.with_name(f"{stem.name}_fov.png")] = derive_fov(pixels).astype(np.uint8) * 255
    if panel:
        outputs[stem.with_name(f"{stem.name}_panel.png")] = side_by_side(pixels, level, mask)
    try:
        with ExitStack() as stack:
            for target, array in outputs.items():
                save_level_png(array, stack.enter_context(atomic_file(target)))
    except (OSError, SkunetError) as err:
        if getattr(err, "errno", None) == errno.ENAMETOOLONG:  # the temporary's name is 14 characters longer than the output's
            return Prediction(path, error=f"{path}: its output names ({stem.name}_prob.png, ...) are too long for"
                                          " the file system; rename the image shorter")
        return Prediction(path, error=f"{path}: its results could not be written to {stem.parent} "
                                      f"({_why(err)}); free space or choose another --out")
    return Prediction(path, tuple(outputs))


def _why(err: Exception) -> str:
    """The OS's reason for `err`, without the file name: that of a temporary, gone by now."""
    return (err.strerror if isinstance(err, OSError) else None) or reason(err)
