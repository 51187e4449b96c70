"""Pixel-wise segmentation metrics: pure functions, arrays in, numbers out, no I/O.

Written to read like :mod:`sklearn.metrics` and tested against it. Labels and predictions are
binary arrays of any shape (bool or 0/1); scores are vessel probabilities (any real dtype).

Two evaluation protocols are reported side by side (see docs/paper.md, "Evaluation protocols"):

* ``paper``: every pixel of every test image, background outside the field of view included, as in
  the SA-UNet lineage's code. SKU-Net's published numbers fit this protocol.
* ``fov``: only the pixels inside the field-of-view (FOV) mask, the usual protocol in the
  retinal-vessel literature.

A pixel is predicted vessel where its probability is strictly greater than the threshold (0.5),
as in the lineage's ``y_pred > 0.5``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
SCORE_NAMES = ("f1", "accuracy", "sensitivity", "specificity", "precision", "iou", "mcc")
COUNT_NAMES = ("tp", "fp", "fn", "tn")


def _binary(a: Any, name: str) -> np.ndarray:
    """`a` as a bool array; ValueError unless it holds only 0/1 (or bools)."""
    arr = np.asarray(a)
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be a numeric or bool array, got dtype {arr.dtype}")
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(
            f"{name} must be binary (bool or 0/1); threshold it first (e.g. a 0/255 label > 127)"
        )
    return arr.astype(bool)


def _same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {a.shape} and {b.shape}")


def _scores(s: Any) -> np.ndarray:
    arr = np.asarray(s)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"scores must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError("scores contain NaN or infinity")
    return arr


# ---------------------------------------------------------------------------------------------
# Thresholded metrics


def confusion_counts(y_true: Any, y_pred: Any) -> dict[str, int]:
    """Pixel counts of the binary confusion matrix.

    Parameters
    ----------
    y_true, y_pred : array-like of bool or 0/1, same shape (any number of dimensions)
        Ground truth and prediction; 1 / True is vessel (the positive class).

    Returns
    -------
    dict with Python ints ``tp``, ``fp``, ``fn``, ``tn``.
    """
    t = _binary(y_true, "y_true").ravel()
    p = _binary(y_pred, "y_pred").ravel()
    _same_shape(t, p, "y_true and y_pred")
    # Sec. IV.2: the pixel counts TP, FP, FN, TN; index 0 = tn, 1 = fp, 2 = fn, 3 = tp
    tn, fp, fn, tp = np.bincount(2 * t.astype(np.uint8) + p, minlength=4).tolist()
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)}


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def scores_from_counts(counts: dict[str, int]) -> dict[str, float]:
    """Scores from confusion counts (``tp``, ``fp``, ``fn``, ``tn``).

    Returns
    -------
    dict of Python floats:

    * ``f1`` = 2 tp / (2 tp + fp + fn) (the Dice coefficient; sklearn ``f1_score``)
    * ``accuracy`` = (tp + tn) / all
    * ``sensitivity`` = tp / (tp + fn) (recall of the vessel class)
    * ``specificity`` = tn / (tn + fp) (recall of the background class)
    * ``precision`` = tp / (tp + fp)
    * ``iou`` = tp / (tp + fp + fn) (Jaccard index; sklearn ``jaccard_score``)
    * ``mcc`` = (tp tn - fp fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) (sklearn ``matthews_corrcoef``)

    Every score is finite: a score whose denominator is 0 is 0.0, the value scikit-learn returns
    (with its ``zero_division`` default) for the same case. For example, an image with no vessel
    predicted and none present gets f1 = precision = sensitivity = iou = mcc = 0.0.
    """
    tp, fp, fn, tn = (int(counts[k]) for k in COUNT_NAMES)
    if min(tp, fp, fn, tn) < 0:
        raise ValueError(f"confusion counts must be non-negative, got {counts}")
    # Python ints: the MCC denominator overflows int64 on a few million pixels.
    mcc_den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    mcc = (tp * tn - fp * fn) / math.sqrt(mcc_den) if mcc_den else 0.0
    return {
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),  # Eq. 10: F1 = 2 TP / (2 TP + FP + FN)
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),  # Eq. 9: (TP + TN) / all
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "iou": _ratio(tp, tp + fp + fn),
        "mcc": float(mcc),
    }


# ---------------------------------------------------------------------------------------------
# Ranking metrics


def _split_sorted(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the positive and of the negative pixels, each sorted ascending."""
    t = _binary(y_true, "y_true").ravel()
    s = _scores(scores).ravel()
    _same_shape(t, s, "y_true and scores")
    pos = np.sort(s[t])
    neg = np.sort(s[~t])
    if pos.size == 0 or neg.size == 0:
        only = "background" if pos.size == 0 else "vessel"
        raise ValueError(
            f"ROC AUC is undefined: only one class ({only}) is present in y_true"
        )
    return pos, neg


def roc_auc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve, exact, equal to ``sklearn.metrics.roc_auc_score``.

    Computed as the Mann-Whitney statistic, P(score_pos > score_neg) + P(tie) / 2, which is the
    trapezoidal area under the ROC curve with tied scores handled as scikit-learn does. It sorts
    the two classes separately and counts with binary search: O(n log n), about half a second for
    8 million float32 pixels.

    Raises
    ------
    ValueError
        When only one class is present in ``y_true`` (the AUC is undefined), or when the scores
        contain NaN or infinity.
    """
    pos, neg = _split_sorted(y_true, scores)
    # the ranks are computed on the sorted positives to keep the binary searches cache-friendly
    below = np.searchsorted(neg, pos, side="left")
    below_or_tied = np.searchsorted(neg, pos, side="right")
    # int64 sums are exact (at most n_pos * n_neg < 2**63 for any image set)
    wins = int(below.sum(dtype=np.int64))
    ties = int(below_or_tied.sum(dtype=np.int64)) - wins
    return (wins + 0.5 * ties) / (pos.size * neg.size)  # Sec. IV.2: ROC AUC


def _thinned(x: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most `max_points` points, evenly spaced along the curve's length, ends kept."""
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    if x.size <= max_points:
        return np.arange(x.size)
    length = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    targets = np.linspace(0.0, length[-1], max_points)[:-1]
    idx = np.searchsorted(length, targets, side="left")
    return np.unique(np.concatenate([idx, [0, x.size - 1]]))


def _cumulative_counts(
    y_true: Any, scores: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Thresholds (descending, the first above every score) and tp, fp counts at score >= each.

    8-bit scores (e.g. probabilities stored as PNG levels) are counted with a histogram instead of
    a sort: the same curve, an order of magnitude faster on millions of pixels.
    """
    if isinstance(scores, np.ndarray) and scores.dtype == np.uint8:
        return _cumulative_counts_uint8(_binary(y_true, "y_true"), scores)
    pos, neg = _split_sorted(y_true, scores)
    distinct = np.unique(np.concatenate([pos, neg]))[::-1]
    # above every score in the scores' own dtype, so `scores >= top` is empty whatever the casting
    if np.issubdtype(distinct.dtype, np.floating):
        top = float(np.nextafter(distinct[0], distinct.dtype.type(np.inf)))
    else:
        top = float(distinct[0]) + 1.0
    thresholds = np.concatenate([[top], distinct.astype(np.float64)])
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    return thresholds, tp, fp, pos.size, neg.size


def _cumulative_counts_uint8(
    y_true: np.ndarray, levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    _same_shape(y_true, levels, "y_true and scores")
    y, v = y_true.ravel(), levels.ravel()
    pos_hist = np.bincount(v[y], minlength=256)
    neg_hist = np.bincount(v[~y], minlength=256)
    present = np.flatnonzero(pos_hist + neg_hist)[::-1]  # distinct levels, descending
    if present.size == 0:
        raise ValueError("no scores given")
    tp_at = np.cumsum(pos_hist[::-1])[::-1]  # tp_at[k] = positives with level >= k
    fp_at = np.cumsum(neg_hist[::-1])[::-1]
    thresholds = np.concatenate([[float(present[0]) + 1.0], present.astype(np.float64)])
    tp = np.concatenate([[0], tp_at[present]])
    fp = np.concatenate([[0], fp_at[present]])
    return thresholds, tp, fp, int(pos_hist.sum()), int(neg_hist.sum())


def roc_curve_points(y_true: Any, scores: Any, max_points: int = 200) -> dict[str, list[float]]:
    """The ROC curve, thinned to at most `max_points` points for plotting.

    Points follow scikit-learn's ``roc_curve`` convention: a pixel counts as vessel when its score
    is **greater than or equal to** the threshold. Points are in decreasing threshold order; the
    first is (fpr 0, tpr 0) with a threshold just above the highest score (finite, unlike
    scikit-learn's ``inf``, so that it stays valid JSON), the last is (1, 1) at the lowest score.
    Thinning keeps points evenly spaced along the curve's length; every kept point is exact.

    Returns
    -------
    dict of lists ``fpr``, ``tpr``, ``threshold`` (Python floats, equal lengths).
    """
    thresholds, tp, fp, n_pos, n_neg = _cumulative_counts(y_true, scores)
    fpr, tpr = fp / n_neg, tp / n_pos
    keep = _thinned(fpr, tpr, max_points)
    return {
        "fpr": fpr[keep].tolist(),
        "tpr": tpr[keep].tolist(),
        "threshold": thresholds[keep].tolist(),
    }


def pr_curve_points(y_true: Any, scores: Any, max_points: int = 200) -> dict[str, list[float]]:
    """The precision-recall curve, thinned to at most `max_points` points for plotting.

    Same threshold convention as :func:`roc_curve_points` (vessel when score >= threshold) and
    the same order (decreasing threshold, so increasing recall). The first point is (recall 0,
    precision 1) with a threshold above every score, scikit-learn's convention for the empty
    prediction; the last is (recall 1, precision = vessel fraction) at the lowest score.

    Returns
    -------
    dict of lists ``recall``, ``precision``, ``threshold`` (Python floats, equal lengths).
    """
    thresholds, tp, fp, n_pos, _ = _cumulative_counts(y_true, scores)
    predicted = tp + fp
    precision = np.divide(tp, predicted, out=np.ones(tp.shape), where=predicted > 0)
    recall = tp / n_pos
    keep = _thinned(recall, precision, max_points)
    return {
        "recall": recall[keep].tolist(),
        "precision": precision[keep].tolist(),
        "threshold": thresholds[keep].tolist(),
    }


def curve_rows(curve: dict[str, list[float]]) -> list[dict[str, float]]:
    """A dict of equal-length lists as a list of row dicts (the layout DVC plots read)."""
    keys = list(curve)
    return [dict(zip(keys, values)) for values in zip(*(curve[k] for k in keys))]


# ---------------------------------------------------------------------------------------------
# Protocols


def protocol_metrics(
    y_true: Any, scores: Any, threshold: float = 0.5, mask: Any = None
) -> dict[str, float | int]:
    """Counts, scores and ROC AUC over the pixels selected by `mask`.

    Parameters
    ----------
    y_true : array-like of bool or 0/1
        Ground truth (1 = vessel).
    scores : array-like of float
        Vessel probabilities, same shape.
    threshold : float
        A pixel is predicted vessel where its score is strictly greater than `threshold`.
    mask : array-like, optional
        Pixels to evaluate (nonzero = evaluated), same shape. None evaluates every pixel.

    Returns
    -------
    dict: ``f1, accuracy, auc, sensitivity, specificity, precision, iou, mcc`` (floats) and
    ``tp, fp, fn, tn`` (ints). Raises ValueError when the selected pixels hold only one class.
    """
    t = _binary(y_true, "y_true")
    s = _scores(scores)
    _same_shape(t, s, "y_true and scores")
    if mask is not None:
        m = np.asarray(mask)
        _same_shape(t, m, "y_true and mask")
        m = m.astype(bool)
        t, s = t[m], s[m]
    counts = confusion_counts(t, s > threshold)
    scores_ = scores_from_counts(counts)
    out: dict[str, float | int] = {
        "f1": scores_["f1"],
        "accuracy": scores_["accuracy"],
        "auc": float(roc_auc(t, s)),
    }
    out.update({k: v for k, v in scores_.items() if k not in out})
    out.update(counts)
    return out


def _check_lists(labels: Sequence, probs: Sequence, fovs: Sequence) -> None:
    if not (len(labels) == len(probs) == len(fovs)):
        raise ValueError(
            f"labels, probs and fovs must have one entry per image, got "
            f"{len(labels)}, {len(probs)} and {len(fovs)}"
        )
    if len(labels) == 0:
        raise ValueError("no images to evaluate")
    for i, (lab, prob, fov) in enumerate(zip(labels, probs, fovs)):
        shapes = {np.shape(lab), np.shape(prob), np.shape(fov)}
        if len(shapes) != 1:
            raise ValueError(
                f"image {i}: label, probability and fov shapes differ: "
                f"{np.shape(lab)}, {np.shape(prob)}, {np.shape(fov)}"
            )


def evaluate(
    labels: Sequence[Any], probs: Sequence[Any], fovs: Sequence[Any], threshold: float = 0.5
) -> dict[str, dict[str, float | int]]:
    """Both protocols over all test images pooled (one confusion matrix, one ROC curve).

    Parameters
    ----------
    labels, probs, fovs : sequences with one array per image
        Ground truth (bool or 0/1), vessel probabilities, and field-of-view masks (nonzero =
        inside), each image at native resolution; shapes may differ between images.
    threshold : float
        Vessel where probability > threshold.

    Returns
    -------
    ``{"paper": metrics, "fov": metrics}``, each as :func:`protocol_metrics` returns (Python
    scalars only, JSON-ready). ``paper`` pools every pixel of every image, the SA-UNet lineage
    protocol; ``fov`` pools only the pixels inside the FOV masks.
    """
    _check_lists(labels, probs, fovs)
    y = np.concatenate([np.asarray(a).ravel() for a in labels])
    p = np.concatenate([np.asarray(a).ravel() for a in probs])
    f = np.concatenate([np.asarray(a).ravel().astype(bool) for a in fovs])
    return {
        "paper": protocol_metrics(y, p, threshold),
        "fov": protocol_metrics(y, p, threshold, mask=f),
    }


def per_image_metrics(
    labels: Sequence[Any],
    probs: Sequence[Any],
    fovs: Sequence[Any],
    stems: Sequence[str],
    threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """One row per image and protocol: ``stem``, ``protocol``, then :func:`protocol_metrics`.

    Rows come in image order, ``paper`` before ``fov`` for each image.
    """
    _check_lists(labels, probs, fovs)
    if len(stems) != len(labels):
        raise ValueError(f"got {len(stems)} stems for {len(labels)} images")
    rows: list[dict[str, Any]] = []
    for stem, lab, prob, fov in zip(stems, labels, probs, fovs):
        for protocol, mask in (("paper", None), ("fov", fov)):
            row: dict[str, Any] = {"stem": str(stem), "protocol": protocol}
            row.update(protocol_metrics(lab, prob, threshold, mask=mask))
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# Probability maps stored as 8-bit images


def probability_to_uint8(p: Any) -> np.ndarray:
    """Probabilities in [0, 1] as uint8 ``round(255 p)``; the round trip error is at most 0.5/255.

    Values outside [0, 1] are clipped. Rounding is half-to-even (numpy's), which keeps the bound.
    """
    arr = _scores(p)
    return np.rint(np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def uint8_to_probability(v: Any) -> np.ndarray:
    """uint8 values as probabilities ``v / 255`` (float32)."""
    arr = np.asarray(v)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 array, got dtype {arr.dtype}")
    return arr.astype(np.float32) / np.float32(255.0)
