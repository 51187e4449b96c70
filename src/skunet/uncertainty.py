"""Paired bootstrap intervals over test images: pure functions, arrays in, JSON-ready dicts out.

A test set is small (DRIVE: 20 images, CHASE_DB1: 8), so a difference of 0.01 in F1 between two
models may be luck of the draw. This module puts 95% intervals on the pooled metrics and on the
differences between models by resampling **whole test images** with replacement (the image, not
the pixel, is the independent unit: pixels of one image are strongly correlated).

The metrics are pooled exactly as :func:`skunet.metrics.evaluate` pools them: F1 and accuracy
from one confusion matrix summed over the images (:func:`skunet.metrics.scores_from_counts`),
ROC AUC from all the pixels' scores together. Per image, the scores are summarised losslessly by
two 256-bin histograms of their 8-bit levels (the stored PNG value ``round(255 p)``), one for the
background pixels and one for the vessel pixels (:func:`level_histograms`); the AUC of any set of
images is then exact from the sum of their histograms (:func:`auc_from_histograms`).

The bootstrap is **paired**: one resample draws one list of image indices and every model is
evaluated on those same images, so a difference A - B is resampled jointly. Image difficulty
varies far more than the gap between good models; pairing cancels it, where two separate intervals
would overlap (:func:`paired_bootstrap`). :func:`ranking_verdict` reads a claimed ordering of
models (the paper's: skunet > unet_dropblock > unet on F1) against the intervals.

Scipy's :func:`scipy.stats.bootstrap` draws the resamples and computes the intervals; the statistic
here maps a whole matrix of resampled image indices to the metrics at once (vectorized), so 1000
resamples of 3 models on 20 images take a few tens of milliseconds.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from skunet.compare import percent
from skunet.metrics import COUNT_NAMES, scores_from_counts

N_LEVELS = 256
METRICS = ("f1", "accuracy", "auc")
METHODS = ("percentile", "BCa")
VERDICTS = ("supported", "contradicted", "unresolved")
_INT64_LIMIT = 2**63


# ---------------------------------------------------------------------------------------------
# Histograms of 8-bit scores


def _bool_array(a: Any, name: str) -> np.ndarray:
    """`a` as a bool array; ValueError unless it holds only 0/1 (or bools)."""
    arr = np.asarray(a)
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number) or not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must be binary (bool or 0/1)")
    return arr.astype(bool)


def _levels(level: Any) -> np.ndarray:
    """`level` as an integer array of 8-bit levels; ValueError for floats or values off 0..255."""
    arr = np.asarray(level)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"level must hold integer 8-bit levels (uint8), got dtype {arr.dtype}; "
            "convert probabilities with skunet.metrics.probability_to_uint8"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= N_LEVELS):
        raise ValueError(f"level values must lie in 0..{N_LEVELS - 1}")
    return arr


def level_histograms(label: Any, level: Any, mask: Any = None) -> np.ndarray:
    """Counts of each 8-bit score level among the background and among the vessel pixels.

    Parameters
    ----------
    label : array-like of bool or 0/1
        Ground truth (1 = vessel), any shape.
    level : array-like of integers in 0..255, same shape
        The stored score of each pixel, ``round(255 p)`` (uint8, as the PNGs hold it).
    mask : array-like, optional
        Pixels to count (nonzero = counted), same shape: the FOV mask for the ``fov`` protocol,
        None (every pixel) for the ``paper`` protocol.

    Returns
    -------
    np.ndarray of int64, shape (2, 256): row 0 background, row 1 vessel; entry ``[c, k]`` is the
    number of selected pixels of class c whose level is k.
    """
    y = _bool_array(label, "label")
    v = _levels(level)
    if y.shape != v.shape:
        raise ValueError(f"label and level must have the same shape, got {y.shape} and {v.shape}")
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != y.shape:
            raise ValueError(
                f"label and mask must have the same shape, got {y.shape} and {m.shape}"
            )
        m = m.astype(bool)
        y, v = y[m], v[m]
    y, v = y.ravel(), v.ravel().astype(np.intp)
    return np.stack(
        [np.bincount(v[~y], minlength=N_LEVELS), np.bincount(v[y], minlength=N_LEVELS)]
    ).astype(np.int64)


def _histogram_array(hist: Any, name: str) -> np.ndarray:
    """`hist` as int64 with last two axes (2, 256); ValueError for negative or fractional counts."""
    arr = np.asarray(hist)
    if arr.ndim < 2 or arr.shape[-2:] != (2, N_LEVELS):
        raise ValueError(f"{name} must have shape (..., 2, {N_LEVELS}), got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.all(arr == np.round(arr))):
        raise ValueError(f"{name} must hold integer counts")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must hold non-negative counts")
    return arr.astype(np.int64)


def _auc_rows(hist: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of each (2, 256) histogram in an int64 array (..., 2, 256).

    2 x (wins + ties / 2) and the denominator 2 n_pos n_neg are exact int64 sums, so the result is
    one correctly rounded division (equal histograms give bit-identical AUCs). Callers check that
    both classes are present and that 2 n_pos n_neg < 2**63.
    """
    neg, pos = hist[..., 0, :], hist[..., 1, :]
    neg_below = np.cumsum(neg, axis=-1) - neg  # background pixels with a strictly lower level
    twice_wins_ties = np.sum(pos * (2 * neg_below + neg), axis=-1)  # 2 wins + ties
    return twice_wins_ties / (2 * pos.sum(axis=-1) * neg.sum(axis=-1))


def _check_auc_defined(n_pos: int, n_neg: int, where: str) -> None:
    if n_pos == 0 or n_neg == 0:
        only = "background" if n_pos == 0 else "vessel"
        raise ValueError(f"ROC AUC is undefined: only one class ({only}) is present in {where}")
    if 2 * n_pos * n_neg >= _INT64_LIMIT:
        raise ValueError(f"too many pixels for exact int64 AUC sums in {where}")


def auc_from_histograms(hist: Any) -> float:
    """Exact ROC AUC of pixels given as a (2, 256) level histogram (:func:`level_histograms`).

    The Mann-Whitney form: P(vessel level > background level) + P(tie) / 2, over every
    (vessel, background) pixel pair, which equals ``sklearn.metrics.roc_auc_score(y, levels)``
    (and :func:`skunet.metrics.roc_auc`) on the pixels themselves. Histograms of several images
    summed give the AUC of those images pooled.

    Raises
    ------
    ValueError
        When the histogram holds only one class (the AUC is undefined) or is malformed.
    """
    h = _histogram_array(hist, "hist")
    if h.shape != (2, N_LEVELS):
        raise ValueError(f"hist must have shape (2, {N_LEVELS}), got {h.shape}")
    _check_auc_defined(int(h[1].sum()), int(h[0].sum()), "the histogram")
    return float(_auc_rows(h))


# ---------------------------------------------------------------------------------------------
# The paired bootstrap


def _counts_array(counts: Any, name: str) -> np.ndarray:
    arr = np.asarray(counts)
    if arr.ndim != 2 or arr.shape[1] != len(COUNT_NAMES):
        raise ValueError(
            f"counts of {name} must have shape (n_images, 4) (tp, fp, fn, tn), got {arr.shape}"
        )
    if not (np.issubdtype(arr.dtype, np.integer) or np.all(arr == np.round(arr))):
        raise ValueError(f"counts of {name} must be integers")
    if arr.size and arr.min() < 0:
        raise ValueError(f"counts of {name} must be non-negative")
    return arr.astype(np.int64)


def _model_arrays(
    counts: Mapping[str, Any], hists: Mapping[str, Any]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Model names, counts (M, n, 4) and flattened histograms (M, n, 512), checked."""
    names = list(counts)
    if not names:
        raise ValueError("no models given")
    if set(names) != set(hists):
        raise ValueError(
            f"counts and hists must name the same models, got {sorted(counts)} and {sorted(hists)}"
        )
    c = [_counts_array(counts[m], m) for m in names]
    h = [_histogram_array(hists[m], f"hists of {m}") for m in names]
    sizes = {m: (len(ci), len(hi)) for m, ci, hi in zip(names, c, h)}
    if len({s for pair in sizes.values() for s in pair}) != 1:
        raise ValueError(
            "every model needs counts and hists for the same images; "
            f"n_images (counts, hists) per model: {sizes}"
        )
    n = len(c[0])
    if n < 2:
        raise ValueError(f"the bootstrap needs at least 2 test images, got {n}")
    for m, ci, hi in zip(names, c, h):
        _check_model(m, ci, hi)
    return names, np.stack(c), np.stack(h).reshape(len(names), n, 2 * N_LEVELS)


def _check_model(name: str, c: np.ndarray, h: np.ndarray) -> None:
    """Counts and histograms must describe the same pixels; the AUC of any resample defined."""
    tp, fp, fn, tn = c.T
    if np.any(tp + fn != h[:, 1].sum(axis=1)) or np.any(fp + tn != h[:, 0].sum(axis=1)):
        raise ValueError(
            f"{name}: counts and hists disagree on the number of vessel (tp + fn) or background "
            "(fp + tn) pixels of an image; were they taken under the same protocol?"
        )
    vessel, background = h[:, 1].sum(axis=1), h[:, 0].sum(axis=1)
    if np.any(vessel == 0) or np.any(background == 0):
        raise ValueError(
            f"{name}: every image needs vessel and background pixels, or a resample of such "
            "images has no ROC AUC"
        )
    n = len(c)
    _check_auc_defined(n * int(vessel.max()), n * int(background.max()), f"resamples of {name}")


def _image_weights(idx: np.ndarray, n: int) -> np.ndarray:
    """(R, m) resampled image indices as (R, n) int64: how often each image is drawn."""
    rows = idx.shape[0]
    flat = (idx + n * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.int64)


def _pooled_scores(summed: np.ndarray) -> np.ndarray:
    """F1 and accuracy (2, R) of summed counts (R, 4), through :func:`scores_from_counts`."""
    out = np.empty((2, len(summed)))
    for r, row in enumerate(summed.tolist()):
        s = scores_from_counts(dict(zip(COUNT_NAMES, row)))
        out[0, r], out[1, r] = s["f1"], s["accuracy"]
    return out


def resampled_metrics(counts: np.ndarray, hists: np.ndarray, idx: Any) -> np.ndarray:
    """Pooled F1, accuracy and AUC of each model on each resample of images.

    Parameters
    ----------
    counts : int array (n_models, n_images, 4)
        tp, fp, fn, tn of each model on each image.
    hists : int array (n_models, n_images, 2, 256) (or the last two axes flattened to 512)
        Level histograms of each model on each image.
    idx : int array (..., m)
        Image indices; each vector along the last axis is one resample (with repeats).

    Returns
    -------
    float array (n_models, 3, ...): :data:`METRICS` of each model pooled over each resample.
    """
    c = np.asarray(counts, dtype=np.int64)
    h = np.asarray(hists, dtype=np.int64).reshape(c.shape[0], c.shape[1], 2 * N_LEVELS)
    i = np.asarray(idx).astype(np.intp)
    lead = i.shape[:-1]
    w = _image_weights(i.reshape(-1, i.shape[-1]), c.shape[1])
    out = np.empty((c.shape[0], len(METRICS), w.shape[0]))
    for m in range(c.shape[0]):
        out[m, :2] = _pooled_scores(w @ c[m])
        out[m, 2] = _auc_rows((w @ h[m]).reshape(-1, 2, N_LEVELS))
    return out.reshape(c.shape[0], len(METRICS), *lead)


def _check_pairs(pairs: Sequence[tuple[str, str]], names: list[str]) -> list[tuple[str, str]]:
    out = []
    for pair in pairs:
        a, b = pair
        for m in (a, b):
            if m not in names:
                raise ValueError(f"pair {pair!r} names unknown model {m!r}; models: {names}")
        if a == b:
            raise ValueError(f"pair {pair!r} compares a model with itself")
        out.append((str(a), str(b)))
    return out


def _make_statistic(c: np.ndarray, h: np.ndarray, pair_index: list[tuple[int, int]]) -> Any:
    """The statistic scipy resamples: idx (..., m) -> rows (M * 3 + P * 3, ...).

    Rows: each model's metrics (model-major), then each pair's differences A - B per metric,
    all computed on the same resampled images.
    """

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        i = np.moveaxis(np.asarray(idx), axis, -1)
        per_model = resampled_metrics(c, h, i)  # (M, 3, ...)
        diffs = [per_model[a] - per_model[b] for a, b in pair_index]  # each (3, ...)
        rows = per_model.reshape(-1, *per_model.shape[2:])
        return np.concatenate([rows, *diffs], axis=0) if diffs else rows

    return statistic


def _run_scipy(
    statistic: Any, n: int, n_resamples: int, seed: int, confidence_level: float, method: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bootstrap distribution (k, B), low (k,), high (k,) from :func:`scipy.stats.bootstrap`.

    Where a row's bootstrap distribution is constant (identical images, or identical models in
    a difference) the interval is that constant; scipy's BCa would give NaN there.
    """
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(
            (np.arange(n),),
            statistic,
            n_resamples=n_resamples,
            vectorized=True,
            axis=-1,
            confidence_level=confidence_level,
            method=method,
            rng=np.random.default_rng(seed),
        )
    dist = np.asarray(res.bootstrap_distribution).reshape(-1, n_resamples)
    low = np.asarray(res.confidence_interval.low, dtype=float).reshape(-1).copy()
    high = np.asarray(res.confidence_interval.high, dtype=float).reshape(-1).copy()
    constant = np.all(dist == dist[:, :1], axis=1)
    low[constant] = high[constant] = dist[constant, 0]
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(
            f"the {method} interval is undefined for some statistic (scipy returned NaN); "
            "use method='percentile'"
        )
    return dist, low, high


def bootstrap_p_value(differences: Any) -> float:
    """Two-sided bootstrap p-value for "no difference" from resampled differences A - B.

    ``min(1, 2 min(share of differences <= 0, share of differences >= 0))``: twice the share of
    the resampled differences on the far side of 0 (zeros count on both sides, so a difference
    that is always 0 gives 1). It is 0 when no resample falls on the far side, i.e. p < 2 / B
    for B resamples, and below 0.05 about when the percentile interval excludes 0. With few
    test images it is coarse: 8 images have only 6435 distinct resamples, and an image-level
    bootstrap of a small set understates the spread, so read it as a rough guide, not an exact
    test.
    """
    d = np.asarray(differences, dtype=float)
    below, above = float(np.mean(d <= 0)), float(np.mean(d >= 0))
    return float(min(1.0, 2.0 * min(below, above)))


def _method_name(method: str) -> str:
    for name in METHODS:
        if method.lower() == name.lower():
            return name
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _interval(value: float, low: float, high: float) -> dict[str, float]:
    return {"value": float(value), "low": float(low), "high": float(high)}


def paired_bootstrap(
    counts: Mapping[str, Any],
    hists: Mapping[str, Any],
    pairs: Sequence[tuple[str, str]] = (),
    *,
    n_resamples: int,
    seed: int,
    confidence_level: float = 0.95,
    method: str = "percentile",
) -> dict[str, Any]:
    """Paired bootstrap intervals of pooled F1, accuracy and AUC, and of differences between models.

    Every resample draws n image indices with replacement (n = number of test images) and
    evaluates **every** model on those same images, pooled: F1 and accuracy from the summed
    confusion counts (:func:`skunet.metrics.scores_from_counts`), AUC from the summed level
    histograms (:func:`auc_from_histograms`). The differences A - B of each pair come from the
    same resamples, so what all models find hard cancels out of them.

    Parameters
    ----------
    counts : mapping model name -> int array (n_images, 4)
        tp, fp, fn, tn of each test image at the threshold, in one image order shared by all.
    hists : mapping model name -> int array (n_images, 2, 256)
        :func:`level_histograms` of each image under the same protocol as `counts`.
    pairs : sequence of (a, b) model names
        Differences to report, each as a - b (e.g. ``[("skunet", "unet_dropblock"),
        ("unet_dropblock", "unet")]``; :func:`consecutive_pairs` builds them from a ranking).
    n_resamples : int
        Number of bootstrap resamples (params.yaml).
    seed : int
        Seeds ``numpy.random.default_rng``, passed to scipy as ``rng``: same seed, same result.
    confidence_level : float
        0.95 by default.
    method : ``"percentile"`` (default) or ``"BCa"``
        The interval from :func:`scipy.stats.bootstrap`. Percentile is the default because (1)
        "supported" (the interval excludes 0) and the p-value are then read from one and the same
        bootstrap distribution, so they agree; (2) BCa's acceleration is a jackknife over the
        images, which with 8 images (CHASE_DB1) is itself very noisy, and its shifted quantiles
        can land in tails that 1000 resamples barely sample; (3) the statistics here are ratios of
        sums over hundreds of thousands of pixels, so their bias and skew, which BCa corrects,
        are small beside the image-to-image spread. BCa remains available for comparison.

    Returns
    -------
    JSON-ready dict (Python scalars only)::

        {"n_images": 20, "n_resamples": 1000, "seed": 0, "confidence": 0.95,
         "method": "percentile", "metrics": ["f1", "accuracy", "auc"],
         "models": {model: {metric: {"value", "low", "high"}}},
         "differences": [{"a", "b", "metric", "value", "low", "high", "p_value", "supported"}]}

    ``value`` is the statistic of the full test set (the pooled metric the evaluation reports);
    ``low``, ``high`` the interval. ``supported`` is True when a difference's interval excludes 0
    (either sign); ``p_value`` is :func:`bootstrap_p_value`. An interval is a single point when
    the bootstrap distribution is constant (e.g. all images identical).

    Raises
    ------
    ValueError
        Fewer than 2 images, models with different numbers of images, counts and hists that do
        not describe the same pixels, an image without vessel or background pixels (AUC
        undefined), unknown models in `pairs`, or a bad `method` / `n_resamples`.
    """
    method = _method_name(method)
    if isinstance(n_resamples, bool) or int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level!r}")
    names, c, h = _model_arrays(counts, hists)
    pair_list = _check_pairs(pairs, names)
    pair_index = [(names.index(a), names.index(b)) for a, b in pair_list]
    n = c.shape[1]
    statistic = _make_statistic(c, h, pair_index)
    point = statistic(np.arange(n))
    dist, low, high = _run_scipy(statistic, n, int(n_resamples), seed, confidence_level, method)
    k = len(METRICS)
    models = {
        m: {
            metric: _interval(point[i * k + j], low[i * k + j], high[i * k + j])
            for j, metric in enumerate(METRICS)
        }
        for i, m in enumerate(names)
    }
    differences = []
    for p, (a, b) in enumerate(pair_list):
        for j, metric in enumerate(METRICS):
            row = (len(names) + p) * k + j
            entry: dict[str, Any] = {"a": a, "b": b, "metric": metric}
            entry.update(_interval(point[row], low[row], high[row]))
            entry["p_value"] = bootstrap_p_value(dist[row])
            entry["supported"] = bool(low[row] > 0 or high[row] < 0)
            differences.append(entry)
    return {
        "n_images": int(n),
        "n_resamples": int(n_resamples),
        "seed": int(seed),
        "confidence": float(confidence_level),
        "method": method,
        "metrics": list(METRICS),
        "models": models,
        "differences": differences,
    }


# ---------------------------------------------------------------------------------------------
# Reading a claimed ranking


def consecutive_pairs(order: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs (better, next) of a ranking given best first: ``[(o[0], o[1]), (o[1], o[2]), ...]``."""
    return [(str(a), str(b)) for a, b in zip(order[:-1], order[1:])]


def _difference(result: Mapping[str, Any], a: str, b: str, metric: str) -> dict[str, float]:
    """value, low, high of a - b on `metric` from `result`, negating a stored b - a."""
    for d in result["differences"]:
        if d["metric"] != metric:
            continue
        if (d["a"], d["b"]) == (a, b):
            return {"value": d["value"], "low": d["low"], "high": d["high"]}
        if (d["a"], d["b"]) == (b, a):
            return {"value": -d["value"], "low": -d["high"], "high": -d["low"]}
    raise ValueError(
        f"the bootstrap result has no {metric} difference between {a!r} and {b!r}; "
        "call paired_bootstrap with pairs=consecutive_pairs(order)"
    )


def _fmt(a: str, b: str, d: Mapping[str, float]) -> str:
    return f"{a} - {b} = {d['value']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"


def ranking_verdict(
    result: Mapping[str, Any], order: Sequence[str], metric: str = "f1"
) -> dict[str, str]:
    """Whether the paired bootstrap supports a ranking of models, given best first.

    * ``supported``: every consecutive difference (better - next) has its interval above 0;
    * ``contradicted``: some consecutive difference has its interval below 0 (the claimed
      better model is worse);
    * ``unresolved``: neither (some interval includes 0): the test set cannot tell.

    Parameters
    ----------
    result : dict from :func:`paired_bootstrap`
        It must hold the differences of the consecutive pairs on `metric`, in either order.
    order : sequence of model names, best first (e.g. ``["skunet", "unet_dropblock", "unet"]``)
    metric : one of :data:`METRICS`

    Returns
    -------
    dict of str: ``claim`` (e.g. ``"skunet > unet_dropblock > unet"``), ``metric``, ``verdict``
    (one of :data:`VERDICTS`) and ``sentence``, one line saying why, with the intervals.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if len(order) < 2 or len(set(order)) != len(order):
        raise ValueError(f"order must name at least 2 distinct models, got {list(order)}")
    pairs = consecutive_pairs(order)
    diffs = [_difference(result, a, b, metric) for a, b in pairs]
    level = percent(result["confidence"])
    claim = " > ".join(str(m) for m in order)
    below = [_fmt(a, b, d) for (a, b), d in zip(pairs, diffs) if d["high"] < 0]
    open_ = [_fmt(a, b, d) for (a, b), d in zip(pairs, diffs) if d["low"] <= 0 <= d["high"]]
    head = f"{metric} {claim} on {result['n_images']} images is"
    if below:
        verdict, why = "contradicted", f"interval below 0: {'; '.join(below)}"
    elif open_:
        verdict, why = "unresolved", f"interval includes 0: {'; '.join(open_)}"
    else:
        shown = "; ".join(_fmt(a, b, d) for (a, b), d in zip(pairs, diffs))
        verdict, why = "supported", f"every interval above 0: {shown}"
    sentence = f"{head} {verdict} at {level} ({why})."
    return {"claim": claim, "metric": metric, "verdict": verdict, "sentence": sentence}


def model_intervals(
    counts: Mapping[str, Any],
    hists: Mapping[str, Any],
    ranking: Sequence[str],
    *,
    n_resamples: int,
    seed: int,
    confidence_level: float = 0.95,
) -> dict[str, Any]:
    """:func:`paired_bootstrap` of the models present on one dataset and protocol, with the
    differences of each model from the next one in `ranking` (best first: A - B where both were
    evaluated) and, when every model of `ranking` is present, :func:`ranking_verdict` on F1 as
    ``ranking``. A partial run gets intervals for what it has."""
    present = [m for m in ranking if m in counts]
    pairs = [(a, b) for a, b in consecutive_pairs(ranking) if a in counts and b in counts]
    result = paired_bootstrap({m: counts[m] for m in present}, {m: hists[m] for m in present}, pairs,
                              n_resamples=n_resamples, seed=seed, confidence_level=confidence_level)
    if len(present) == len(ranking):
        result["ranking"] = ranking_verdict(result, ranking, "f1")
    return result
