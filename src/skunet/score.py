"""Score your own method's predictions under the paper's protocols (`skunet evaluate`).

A folder of probability maps (8-bit or 16-bit PNG, or .npy arrays of probabilities) or binary
masks, one per test image of DRIVE or CHASE_DB1, matched to the test images by id: a file whose
name is the id (``01.png``) or starts with it and a separator (``01_test.png``,
``Image_11L-prob.npy``). They are scored as they are, by the evaluate stage's own code
(:func:`skunet.evaluation.write_evaluation`): the same metrics JSON (both protocols, counts),
per-image table and curves; then set beside the paper's Tables 3-6 and audited as the published
numbers are (:func:`skunet.audit.audit_scores`). Missing, extra, duplicated or mis-sized
predictions are named in one line each.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from skunet.atomic import atomic_dir
from skunet.audit import CONSISTENT, INCONSISTENT, audit_scores, reference_rows
from skunet.compare import read_yaml_file
from skunet.config import DATASETS, PROTOCOLS
from skunet.data.raw import load_manifest, read_png
from skunet.errors import SkunetError, reason
from skunet.evaluation import PLOT_KINDS, write_evaluation
from skunet.predict import stored_wide

SUFFIXES = (".png", ".npy")
SEPARATORS = ("_", "-", ".", " ")
# what `skunet predict` writes beside <id>_prob.png: set aside when the probability map is there
PREDICT_COMPANIONS = ("mask", "fov", "panel")
# How the report.md `skunet evaluate` writes begins: how an --out it wrote before is told from the user's own
REPORT_TITLE = "# Your predictions on "


@dataclass(frozen=True)
class Matched:
    """Prediction files matched to the test ids, and what did not match."""

    files: dict[str, Path]
    missing: list[str]
    extra: list[Path]
    duplicated: dict[str, list[Path]]
    set_aside: list[Path]
    broken: list[Path]  # links to nothing: named, not passed over unsaid


def match(folder: Path, ids: list[str]) -> Matched:
    """The prediction file of each test id in `folder` (see the module docstring for the rule);
    the longest id wins where one id is the start of another."""
    if not folder.is_dir():
        raise SkunetError(f"{folder}: not a folder; give the folder that holds your predictions")
    found: dict[str, list[Path]] = {i: [] for i in ids}
    extra = []
    broken = sorted(p for p in folder.iterdir() if p.is_symlink() and not p.exists())
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        owners = [i for i in ids if path.stem == i or any(path.stem.startswith(i + s) for s in SEPARATORS)]
        if path.suffix.lower() in SUFFIXES and owners:
            found[max(owners, key=len)].append(path)
        else:
            extra.append(path)
    set_aside = []
    for i, paths in found.items():  # `skunet predict`'s folder: <stem>_prob.png beside its mask and others
        probs = [p for p in paths if p.stem.endswith("_prob")]
        if len(paths) > 1 and len(probs) == 1:
            companions = {f"{probs[0].stem.removesuffix('_prob')}_{kind}" for kind in PREDICT_COMPANIONS}
            if all(p.stem in companions for p in paths if p != probs[0]):
                set_aside += [p for p in paths if p != probs[0]]
                found[i] = probs
    return Matched(
        files={i: paths[0] for i, paths in found.items() if len(paths) == 1},
        missing=[i for i, paths in found.items() if not paths],
        extra=extra,
        duplicated={i: paths for i, paths in found.items() if len(paths) > 1},
        set_aside=set_aside,
        broken=broken,
    )


def read_prediction(path: Path) -> np.ndarray:
    """A prediction file as float probabilities in [0, 1]: integers that are all 0 or 1 and bools
    as a 0 / 1 mask, else 8-bit PNG / 255, 16-bit PNG / 65535, .npy floats as they are, uint8 /
    255, uint16 / 65535."""
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
            if not isinstance(array, np.ndarray):  # an .npz archive under a .npy name
                raise ValueError("an .npz archive, not one array")
        else:
            with Image.open(path) as img:
                _refuse_alpha_and_wide_colour(path, img)
                img.load()
                if img.mode in ("RGB", "RGBA", "P"):  # a palette may hold colours: the same check; alpha is opaque
                    bands = np.asarray(img.convert("RGB"))
                    if not (bands == bands[..., :1]).all():
                        raise SkunetError(f"{path}: a colour image; save the probability map as one grey channel")
                    array = bands[..., 0]
                else:
                    array = np.asarray(img.convert("L") if img.mode in ("1", "LA") else img)
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, UnidentifiedImageError) as err:
        raise SkunetError(f"{path}: unreadable ({reason(err)}); give an 8/16-bit PNG or a .npy array") from None
    if array.ndim != 2 or array.size == 0:
        raise SkunetError(f"{path}: shape {array.shape}; a prediction is one 2-D map per image")
    kind, size = array.dtype.kind, array.dtype.itemsize
    if kind == "b" or (kind in "ui" and array.max() <= 1 and array.min() >= 0):
        return array.astype(np.float32)  # a 0/1 mask (cv2.imwrite of a 0/1 array writes levels 0 and 1)
    if kind in "ui" and np.isin(array, (0, 255)).all():
        return (array == 255).astype(np.float32)  # a 0/255 mask, whatever its integer type
    if kind == "u" and size == 1:
        return array.astype(np.float32) / np.float32(255)
    if kind in "ui" and (size == 2 or (kind == "i" and path.suffix.lower() == ".png")):
        if array.max() <= 255:  # read as x / 65535 every pixel would fall below 0.5, unsaid
            raise SkunetError(f"{path}: 16-bit levels, none above 255 (8-bit levels stored in 16 bits?); save them"
                              " as 8-bit, or as probabilities")
        return array.astype(np.float64) / 65535.0  # 16-bit levels (PIL reads some 16-bit PNGs as int32)
    if kind == "f":
        if not np.isfinite(array).all():
            raise SkunetError(f"{path}: {np.count_nonzero(~np.isfinite(array))} values are NaN or infinite;"
                              " give probabilities, e.g. after a sigmoid")
        if array.min() < 0 or array.max() > 1:
            raise SkunetError(f"{path}: values outside [0, 1] (min {array.min():.3g}, max {array.max():.3g});"
                              " give probabilities, e.g. after a sigmoid")
        return array.astype(np.float64)
    raise SkunetError(f"{path}: dtype {array.dtype}; give probabilities (float), 8/16-bit levels or a 0/1 mask")


def _refuse_alpha_and_wide_colour(path: Path, img: Image.Image) -> None:
    """A map with an alpha channel (its grey or RGB would be scored, the alpha dropped), or a colour
    PNG stored at 16 bits a channel (PIL reads it at 8): refused, as `skunet predict` refuses them."""
    if "A" in img.getbands() and img.getchannel("A").getextrema() != (255, 255):  # opaque (matplotlib's imsave): kept
        raise SkunetError(f"{path}: an {img.mode} image with transparency, which would be dropped unsaid;"
                          " save the probability map as one grey channel (8/16-bit PNG) without alpha")
    if len(img.getbands()) > 1 and stored_wide(img):
        raise SkunetError(f"{path}: a 16-bit colour image, which would be read at 8 bits; save the probability map"
                          " as one grey channel (a 16-bit grey PNG keeps its 16 bits)")


def published_rows(reference_path: Path, dataset: str) -> list[tuple[str, str, Mapping[str, float]]]:
    """(table, method, scores) of every published row for `dataset`: the paper's models, then the
    methods it quotes (:func:`skunet.audit.reference_rows`)."""
    rows = reference_rows(read_yaml_file(reference_path), reference_path)
    return [(f"Table {table}", method, scores) for d, method, table, scores in rows if d == dataset]


def comparison_table(result: Mapping[str, Any], rows: list[tuple[str, str, Mapping[str, float]]]) -> str:
    """Yours under both protocols above every published row."""
    lines = ["| method | source | F1 | accuracy | AUC |", "|---|---|---:|---:|---:|"]
    for protocol in PROTOCOLS:
        r = result[protocol]
        lines.append(f"| **yours** | protocol `{protocol}` | {r['f1']:.4f} | {r['accuracy']:.4f} | {r['auc']:.4f} |")
    for table, method, s in rows:
        lines.append(f"| {method} | {table} | {s['f1']:.4f} | {s['accuracy']:.4f} | {s['auc']:.4f} |")
    return "\n".join(lines) + "\n"


def audit_table(dataset: str, result: Mapping[str, Any]) -> str:
    """Your numbers, rounded as a paper prints them (4 digits), audited as the published ones are:
    which evaluations could have given them."""
    lines = ["| your numbers | consistent with | inconsistent with |", "|---|---|---|"]
    for protocol in PROTOCOLS:
        scores = {k: round(result[protocol][k], 4) for k in ("f1", "accuracy")}  # what the paper prints
        verdicts = audit_scores(dataset, scores)["verdicts"]
        yes = [label for label, v in verdicts.items() if v["verdict"] == CONSISTENT]
        no = [label for label, v in verdicts.items() if v["verdict"] == INCONSISTENT]
        lines.append(f"| protocol `{protocol}` | {'; '.join(yes) or '-'} | {'; '.join(no) or '-'} |")
    return "\n".join(lines) + "\n"


def score_folder(folder: Path, dataset: str, raw_dir: Path, out_dir: Path, reference: Path,
                 threshold: float = 0.5, curve_points: int = 200) -> tuple[dict[str, Any], str, list[str]]:
    """Score the predictions in `folder` against `dataset`'s test images in `raw_dir`; write
    `out_dir`/metrics.json, plots/ and report.md. Returns (metrics, report text, notes: one
    line per extra file). Missing, duplicated, unreadable or mis-sized predictions raise
    SkunetError naming every one of them, one per line."""
    if dataset not in DATASETS:
        raise SkunetError(f"--dataset {dataset}: one of {', '.join(DATASETS)}")
    if not 0 < threshold < 1:
        raise SkunetError(f"--threshold {threshold}: give a probability in (0, 1) (maps are read as probabilities, "
                          "8-bit levels / 255)")
    if not (raw_dir / "manifest.json").is_file():
        raise SkunetError(f"{raw_dir}: no test images here; run `dvc repro download@{dataset}` (or point --raw "
                          "at a data/raw/<dataset> folder)")
    manifest = load_manifest(raw_dir)
    if manifest.get("dataset") != dataset:
        raise SkunetError(f"--raw {raw_dir}: holds the test images of {manifest.get('dataset')}, not of {dataset};"
                          f" give --dataset {manifest.get('dataset')}, or --raw data/raw/{dataset}")
    _check_out(out_dir)
    rows = published_rows(reference, dataset)  # a bad reference file is said before any work
    ids = list(manifest["test"])
    matched = match(folder, ids)
    problems = [f"{path}: a link to {os.readlink(path)}, which does not exist; give the file itself"
                for path in matched.broken]
    problems += [f"{folder}: no prediction for test image {i}" for i in matched.missing]
    if matched.missing and matched.extra:  # what the user may have meant them to be
        names = ", ".join(p.name for p in matched.extra[:4]) + (", ..." if len(matched.extra) > 4 else "")
        problems.append(f"{folder}: {len(matched.extra)} file(s) match no test image of {dataset} ({names}); name each"
                        f" prediction by its test image's id ({ids[0]}.png, {ids[0]}_prob.npy, ...), as a .png or .npy")
    problems += [f"{folder}: {len(paths)} predictions for test image {i}: {', '.join(p.name for p in paths)}"
                 for i, paths in matched.duplicated.items()]
    stage = f"download@{dataset}"
    labels = {i: read_png(raw_dir / "labels" / f"{i}.png", "L", stage) > 127 for i in matched.files}
    probs = {}
    for i, path in matched.files.items():
        try:
            prob = read_prediction(path)
        except SkunetError as err:
            problems.append(str(err))
            continue
        if prob.shape != labels[i].shape:
            problems.append(f"{path}: {prob.shape[1]} x {prob.shape[0]} px, test image {i} is "
                            f"{labels[i].shape[1]} x {labels[i].shape[0]}; predict at the image's own size")
            continue
        probs[i] = prob
    if problems:
        raise SkunetError("\n".join(p.replace("\n", "\\n") for p in problems))  # a name with a newline: still one line
    fovs = [read_png(raw_dir / "fov" / f"{i}.png", "L", stage) > 127 for i in ids]
    try:
        with atomic_dir(out_dir) as tmp:  # the whole folder or nothing (Ctrl-C, a full disk)
            result = write_evaluation([probs[i] for i in ids], [labels[i] for i in ids], fovs, ids,
                                      tmp / "metrics.json", tmp / "plots", dataset, threshold, curve_points)
            binary = all(np.isin(probs[i], (0.0, 1.0)).all() for i in ids)
            text = _report(result, rows, dataset, f"{len(ids)} test images from {folder}", threshold, binary)
            (tmp / "report.md").write_text(text)
    except OSError as err:  # named by --out: the error's own file may be the temporary folder, gone by now
        raise SkunetError(f"--out {out_dir}: could not be written ({err.strerror or reason(err)}); free space or choose"
                          " another --out") from None
    notes = [f"{path}: matches no test image of {dataset}; ignored" for path in matched.extra]
    return result, text, notes


def _report(result: Mapping[str, Any], rows: list[tuple[str, str, Mapping[str, float]]], dataset: str, what: str,
            threshold: float, binary: bool) -> str:
    """report.md: yours beside the published rows, then the audit of your numbers."""
    return "\n".join([
        f"{REPORT_TITLE}{dataset}, scored as the pipeline scores its own", "",
        f"{what}; threshold {threshold} (vessel where probability > it)"
        + ("; binary masks, so the AUC is that of a single operating point" if binary else "") + ".", "",
        comparison_table(result, rows),
        "Your numbers, rounded to 4 digits as a paper prints them, audited as the published ones are "
        "(`skunet audit`): which evaluations could have given them.", "",
        audit_table(dataset, result),
    ])


def outputs(dataset: str) -> set[str]:
    """What `skunet evaluate` writes into its --out folder for `dataset`: the whole tree, folders too."""
    curves = {f"plots/{kind}/{dataset}.csv" for kind in PLOT_KINDS}
    return {"metrics.json", "report.md", "plots"} | {str(Path(c).parent) for c in curves} | curves


def _tree(folder: Path) -> list[str]:
    """Every entry below `folder` (folders too), relative; a link is an entry, never followed."""
    entries = []
    for path in sorted(folder.iterdir()):
        entries.append(path.name)
        if path.is_dir() and not path.is_symlink():
            entries += [f"{path.name}/{below}" for below in _tree(path)]
    return entries


def _foreign(out_dir: Path) -> str | None:
    """metrics.json or report.md where it is not recognisably what `skunet evaluate` writes (the
    metrics of both protocols; the report's title), else None."""
    try:
        result = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        result = None
    if not (isinstance(result, dict) and all(isinstance(result.get(p), dict) for p in PROTOCOLS)):
        return "metrics.json"
    try:
        title = (out_dir / "report.md").read_text(encoding="utf-8")[:len(REPORT_TITLE)]
    except (OSError, ValueError):
        title = None
    return None if title == REPORT_TITLE else "report.md"


def _check_out(out_dir: Path) -> None:
    """--out: a new or empty folder, or one whose whole tree is exactly what an earlier `skunet
    evaluate` wrote (it is replaced whole); never a folder with anything else in it (the user's own
    report.md, the pipeline's reports/ or metrics/), and never a link, which replacing would break."""
    if out_dir.is_symlink():
        raise SkunetError(f"--out {out_dir}: a symbolic link (to {os.readlink(out_dir)}); give the folder itself"
                          " or a new one")
    if out_dir.exists() and not out_dir.is_dir():
        raise SkunetError(f"--out {out_dir}: a file; give a new folder")
    entries = _tree(out_dir) if out_dir.is_dir() else []
    if not entries:
        return
    other = next((e for e in entries if not any(e in outputs(d) for d in DATASETS)), None)
    if other is None and not any(set(entries) == outputs(d) for d in DATASETS):  # a part, or two datasets' parts
        raise SkunetError(f"--out {out_dir}: not exactly what `skunet evaluate` writes (metrics.json, report.md,"
                          " plots/{per_image,roc,pr}/<dataset>.csv); give a new folder (or one it wrote before)")
    other = other or _foreign(out_dir)
    if other:
        raise SkunetError(f"--out {out_dir}: holds {other}, which `skunet evaluate` does not write; give a new folder"
                          " (or one it wrote before)")
