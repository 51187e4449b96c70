"""Offline augmentation: the paper's 25 albumentations transforms applied to every training image.

SKU-Net (docs/paper.md, "Augmentation (Table 1)") names 21 transforms on the RGB image, a
grey-scale conversion and 3 transforms on the grey image; it gives no magnitudes, so every
argument lives in `params.yaml` (`augment.transforms`), one entry per augmentation, in order:

    {name: snake_case, type: AlbumentationsClass, args: {...}}            # one transform
    {..., crop_fraction: 0.8, resize_back: {interpolation: 1, ...}}        # crop, then Resize to S
    {..., after: to_grey}                                                 # entry `to_grey` first

Departures from the paper, one line each:
- RandomBrightness / RandomContrast / Cutout were removed from albumentations: we use
  RandomBrightnessContrast with one limit at 0 and CoarseDropout.
- Crops are resized back to the input size so that every sample has the same shape.
- ToGray keeps 3 channels (the networks take RGB input).

The label is passed as the albumentations `mask`: geometric transforms move it with the image
(nearest interpolation, set in params), photometric ones leave it alone, and it is re-binarised
to {0, 1} after each augmentation.
"""

from __future__ import annotations

import copy
import inspect
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import pydantic
from tqdm import tqdm

from skunet.errors import SkunetError

ENTRY_KEYS = ("name", "type", "args", "crop_fraction", "resize_back", "after")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class AugmentSpecError(SkunetError, ValueError):
    """An `augment.transforms` entry of params.yaml that cannot be built; the message names it."""


def build_augmentations(spec: Sequence[Mapping[str, Any]], size: int) -> list[tuple[str, A.Compose]]:
    """Build one albumentations pipeline per entry of `augment.transforms`, in params order.

    Args:
        spec: the `augment.transforms` list of params.yaml (see the module docstring).
        size: the side S of the (square) input images; `crop_fraction` is taken of S.

    Returns:
        (name, pipeline) pairs. Each pipeline maps an (S, S, 3) uint8 image and an (S, S) mask to
        arrays of the same shapes.

    Raises:
        AugmentSpecError (a ValueError): one line naming the entry and the bad key, e.g.
        "params.yaml augment.transforms[4] (elastic): unknown argument 'alpah' for ElasticTransform".
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise AugmentSpecError(f"augment: the input size must be a positive integer, got {size!r}")
    size = int(size)
    if isinstance(spec, (str, bytes, Mapping)) or not isinstance(spec, Sequence) or not spec:
        raise AugmentSpecError("params.yaml augment.transforms: must be a non-empty list of entries")

    built: dict[str, list[Any]] = {}  # name -> its transforms, for `after`
    pipelines: list[tuple[str, A.Compose]] = []
    for index, entry in enumerate(spec):
        name, transforms = _build_entry(index, entry, size, built)
        built[name] = transforms
        try:
            # strict: Compose re-checks every transform for arguments it did not recognise.
            pipeline = A.Compose(transforms, strict=True)
        except ValueError as err:
            raise AugmentSpecError(f"{_where(index, name)}: {_one_line(err)}") from err
        pipelines.append((name, pipeline))
    return pipelines


def augment_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    pipelines: Sequence[tuple[str, A.Compose]],
    seed: int,
    out_images: np.ndarray,
    out_labels: np.ndarray,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Write the originals and every augmented copy into `out_images` / `out_labels`.

    Rows are written in transform-major order: rows 0..N-1 are the N originals, rows
    (t+1)N..(t+2)N-1 are pipeline t applied to images 0..N-1. Keras' `validation_split` (the
    paper-faithful split) takes the LAST rows, so with the paper's list and fraction 0.1 the
    validation rows are copies made by the last pipelines only: for N = 20 and 26 blocks of 20, the
    last 52 rows are grey_center_crop (all 20 images), grey_hflip (all 20) and grey_vflip of
    images 8..19; no original and no RGB augmentation is in them.

    Each (pipeline t, image i) draws from its own random stream, seeded from (seed, t, i), so the
    output is byte-identical for a given seed whatever the global numpy / random state, and
    changing one entry of params.yaml leaves the other copies unchanged.

    Args:
        images: (N, S, S, 3) uint8.
        labels: (N, S, S) uint8 in {0, 1}.
        pipelines: from `build_augmentations(spec, S)`.
        seed: non-negative base seed (params `base.seed`).
        out_images: (N * (1 + len(pipelines)), S, S, 3) uint8, preallocated (may be np.memmap).
        out_labels: (N * (1 + len(pipelines)), S, S) uint8, preallocated (may be np.memmap).
        progress: show a tqdm bar over the output rows.

    Returns:
        One record per output row, in row order:
        {"index": row, "source": image index, "transform": pipeline name or "original"}.
    """
    _check_arrays(images, labels, len(pipelines), out_images, out_labels)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"augment: seed must be a non-negative integer, got {seed!r}")
    n, size = images.shape[0], images.shape[1]

    records: list[dict[str, Any]] = []
    with tqdm(total=n * (1 + len(pipelines)), desc="augment", unit="row", disable=not progress) as bar:
        for i in range(n):
            out_images[i] = images[i]
            out_labels[i] = labels[i]
            records.append({"index": i, "source": i, "transform": "original"})
            bar.update()
        for t, (name, pipeline) in enumerate(pipelines):
            for i in range(n):
                row = (t + 1) * n + i
                pipeline.set_random_seed(stream_seed(seed, t, i))
                result = pipeline(image=np.ascontiguousarray(images[i]), mask=np.ascontiguousarray(labels[i]))
                image, mask = result["image"], result["mask"]
                if image.shape != (size, size, 3) or mask.shape != (size, size):
                    raise ValueError(
                        f"augment: pipeline {name!r} returned shapes {image.shape} / {mask.shape}, "
                        f"expected ({size}, {size}, 3) / ({size}, {size}); crops need crop_fraction"
                    )
                out_images[row] = image
                out_labels[row] = mask > 0  # nearest interpolation keeps {0, 1}; this makes sure
                records.append({"index": row, "source": i, "transform": name})
                bar.update()
    return records


def stream_seed(seed: int, transform: int, image: int) -> int:
    """The seed of the random stream of (transform index, image index) under base `seed`."""
    return int(np.random.SeedSequence((int(seed), transform, image)).generate_state(1)[0])


# ---------------------------------------------------------------------------------------------


def _where(index: int, name: Any = None) -> str:
    return f"params.yaml augment.transforms[{index}]" + (f" ({name})" if name else "")


def _build_entry(
    index: int, entry: Any, size: int, built: Mapping[str, list[Any]]
) -> tuple[str, list[Any]]:
    if not isinstance(entry, Mapping):
        raise AugmentSpecError(f"{_where(index)}: must be a mapping with name, type and args")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise AugmentSpecError(f"{_where(index)}: 'name' must be a snake_case string, got {name!r}")
    where = _where(index, name)
    if name in built:
        raise AugmentSpecError(f"{where}: the name {name!r} is used by an earlier entry")
    unknown = [key for key in entry if key not in ENTRY_KEYS]
    if unknown:
        raise AugmentSpecError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(ENTRY_KEYS)}")
    for key in ("type", "args"):
        if key not in entry:
            raise AugmentSpecError(f"{where}: missing key {key!r}")

    cls = _transform_class(entry["type"], where)
    args = entry["args"]
    if not isinstance(args, Mapping):
        raise AugmentSpecError(f"{where}: 'args' must be a mapping of {cls.__name__} arguments")
    if args.get("p") != 1.0:
        # Offline augmentation: a copy that skipped its transform would just duplicate the original.
        raise AugmentSpecError(f"{where}: args must set p: 1.0 (got {args.get('p')!r})")
    args = dict(args)

    transforms: list[Any] = []
    if "after" in entry:
        after = entry["after"]
        if after not in built:
            raise AugmentSpecError(f"{where}: 'after' must name an earlier entry, got {after!r}")
        # Fresh copies: a transform object must not be shared between two pipelines.
        transforms.extend(copy.deepcopy(built[after]))

    if "crop_fraction" in entry:
        fraction = entry["crop_fraction"]
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise AugmentSpecError(f"{where}: crop_fraction must be a number in (0, 1], got {fraction!r}")
        for key in ("height", "width"):
            if key in args:
                raise AugmentSpecError(f"{where}: give crop_fraction, not {key!r} in args")
        side = max(1, round(fraction * size))
        args.update(height=side, width=side)
        resize_back = entry.get("resize_back")
        if not isinstance(resize_back, Mapping):
            raise AugmentSpecError(f"{where}: crop_fraction needs resize_back: {{Resize arguments}}")
        resize_args = {"height": size, "width": size, **resize_back}
        transforms.append(_make(cls, args, where))
        transforms.append(_make(A.Resize, resize_args, f"{where} resize_back"))
    elif "resize_back" in entry:
        raise AugmentSpecError(f"{where}: resize_back is only for entries with crop_fraction")
    else:
        transforms.append(_make(cls, args, where))
    return name, transforms


def _transform_class(type_name: Any, where: str) -> type:
    cls = getattr(A, type_name, None) if isinstance(type_name, str) else None
    if not (inspect.isclass(cls) and issubclass(cls, A.BasicTransform)):
        raise AugmentSpecError(
            f"{where}: unknown type {type_name!r} (not an albumentations {A.__version__} transform)"
        )
    return cls


def _make(cls: type, args: Mapping[str, Any], where: str) -> Any:
    """Instantiate one transform; an argument it would ignore, fix up or default is an error."""
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in args:
        if key not in accepted:
            raise AugmentSpecError(f"{where}: unknown argument {key!r} for {cls.__name__}")
    kwargs = dict(args)
    if _accepts_strict(cls):
        kwargs["strict"] = True
    try:
        # Albumentations warns and carries on where we want to stop: an unknown argument without
        # strict, a value it "adjusted" (an even blur kernel made odd), a schema it could not apply.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return cls(**kwargs)
    except pydantic.ValidationError as err:
        raise AugmentSpecError(f"{where}: bad arguments for {cls.__name__}: {_pydantic_line(err)}") from err
    except (ValueError, TypeError, Warning) as err:
        cause = err.__cause__
        detail = _pydantic_line(cause) if isinstance(cause, pydantic.ValidationError) else _one_line(err)
        raise AugmentSpecError(f"{where}: bad arguments for {cls.__name__}: {detail}") from err


def _accepts_strict(cls: type) -> bool:
    # Albumentations wraps __init__ (adding `strict`) only in classes that define InitSchema next to
    # their own __init__; MedianBlur, for one, defines __init__ without it and rejects `strict`.
    owner = next(klass for klass in cls.__mro__ if "__init__" in vars(klass))
    return "InitSchema" in vars(owner)


def _pydantic_line(err: pydantic.ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'args'}: {e['msg']}" for e in err.errors()
    )


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:3]) or type(err).__name__


def _check_arrays(
    images: np.ndarray,
    labels: np.ndarray,
    n_pipelines: int,
    out_images: np.ndarray,
    out_labels: np.ndarray,
) -> None:
    square_rgb = images.ndim == 4 and images.shape[3] == 3 and images.shape[1] == images.shape[2]
    if not square_rgb or images.dtype != np.uint8:
        raise ValueError(f"augment: images must be (N, S, S, 3) uint8, got {images.shape} {images.dtype}")
    n, size = images.shape[:2]
    rows = n * (1 + n_pipelines)
    for what, array, shape in (
        ("labels", labels, (n, size, size)),
        ("out_images", out_images, (rows, size, size, 3)),
        ("out_labels", out_labels, (rows, size, size)),
    ):
        if array.shape != shape or array.dtype != np.uint8:
            raise ValueError(f"augment: {what} must be {shape} uint8, got {array.shape} {array.dtype}")
    if n and int(labels.max()) > 1:
        raise ValueError("augment: labels must be binary {0, 1}")


def library_versions() -> dict[str, str]:
    """The libraries whose code draws and applies the augmentations. A seed fixes the draws only
    for given versions: OpenCV 4.12 and 5.0, say, give different geometric transforms."""
    return {"albumentations": A.__version__, "opencv": cv2.__version__, "numpy": np.__version__}
