"""skunet.metrics against scikit-learn, the two protocols, and the 8-bit probability round trip."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    auc,
    f1_score,
    jaccard_score,
    matthews_corrcoef,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from skunet import metrics as M

SEEDS = [0, 1, 2, 3, 4]


def _random_case(seed: int, n: int = 5000, prevalence: float = 0.13):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < prevalence
    scores = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.0, 1.0).astype(np.float32)
    return y, scores


def _sklearn_scores(y, pred) -> dict[str, float]:
    kw = {"zero_division": 0}
    return {
        "f1": f1_score(y, pred, **kw),
        "accuracy": accuracy_score(y, pred),
        "sensitivity": recall_score(y, pred, **kw),
        "specificity": recall_score(y, pred, pos_label=0, **kw),
        "precision": precision_score(y, pred, **kw),
        "iou": jaccard_score(y, pred, **kw),
        "mcc": matthews_corrcoef(y, pred),
    }


# ---------------------------------------------------------------------------------------------
# thresholded metrics


@pytest.mark.parametrize("seed", SEEDS)
def test_scores_match_sklearn(seed):
    y, s = _random_case(seed)
    pred = s > 0.5
    counts = M.confusion_counts(y, pred)
    ours = M.scores_from_counts(counts)
    for name, expected in _sklearn_scores(y, pred).items():
        assert ours[name] == pytest.approx(expected, abs=1e-12), name
    tn, fp, fn, tp = np.bincount(2 * y.astype(int) + pred, minlength=4)
    assert counts == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    assert all(type(v) is int for v in counts.values())
    assert all(type(v) is float for v in ours.values())


def test_confusion_counts_any_shape_and_dtype():
    y = np.array([[1, 0, 1], [0, 0, 1]], dtype=np.uint8)
    p = np.array([[True, True, False], [False, False, True]])
    assert M.confusion_counts(y, p) == {"tp": 2, "fp": 1, "fn": 1, "tn": 2}
    expected = {"tp": 2, "fp": 1, "fn": 1, "tn": 2}
    assert M.confusion_counts(y.astype(float), p.astype(int)) == expected


def test_confusion_counts_rejects_non_binary_and_shape_mismatch():
    with pytest.raises(ValueError, match="binary"):
        M.confusion_counts(np.array([0, 255]), np.array([0, 1]))
    with pytest.raises(ValueError, match="same shape"):
        M.confusion_counts(np.zeros(3), np.zeros(4))


@pytest.mark.parametrize(
    "y, pred",
    [
        ([0, 0, 0, 0], [0, 0, 0, 0]),  # nothing to find, nothing predicted
        ([1, 1, 1, 1], [1, 1, 1, 1]),  # all vessel, all right
        ([0, 0, 1, 1], [0, 0, 0, 0]),  # nothing predicted
        ([0, 0, 0, 0], [1, 1, 0, 0]),  # only false positives
        ([1, 1, 1, 1], [0, 0, 1, 0]),  # one class in y_true
    ],
)
@pytest.mark.filterwarnings("ignore:A single label was found")
def test_degenerate_cases_are_finite_and_match_sklearn(y, pred):
    y, pred = np.array(y), np.array(pred)
    ours = M.scores_from_counts(M.confusion_counts(y, pred))
    assert all(np.isfinite(v) for v in ours.values())
    for name, expected in _sklearn_scores(y, pred).items():
        assert ours[name] == pytest.approx(expected, abs=1e-12), name


def test_zero_denominators_give_zero():
    ours = M.scores_from_counts({"tp": 0, "fp": 0, "fn": 0, "tn": 10})
    assert ours["f1"] == ours["precision"] == ours["sensitivity"] == ours["iou"] == 0.0
    assert ours["mcc"] == 0.0
    assert ours["accuracy"] == ours["specificity"] == 1.0
    assert M.scores_from_counts({"tp": 0, "fp": 0, "fn": 0, "tn": 0})["accuracy"] == 0.0


def test_mcc_does_not_overflow_on_large_counts():
    counts = {"tp": 900_000, "fp": 120_000, "fn": 150_000, "tn": 7_000_000}
    tp, fp, fn, tn = 900_000, 120_000, 150_000, 7_000_000
    expected = (tp * tn - fp * fn) / np.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert M.scores_from_counts(counts)["mcc"] == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# ROC AUC and curves


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc_matches_sklearn(seed):
    y, s = _random_case(seed)
    assert M.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc_heavy_ties_8bit(seed):
    y, s = _random_case(seed, n=20000)
    q = np.rint(s * 255).astype(np.uint8)  # at most 256 distinct scores
    assert M.roc_auc(y, q) == pytest.approx(roc_auc_score(y, q), abs=1e-12)
    p = q / 255.0
    assert M.roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    # extreme: three distinct values only
    coarse = np.round(s * 2) / 2
    assert M.roc_auc(y, coarse) == pytest.approx(roc_auc_score(y, coarse), abs=1e-12)


def test_roc_auc_small_cases_by_hand():
    # one positive 0.8 vs negatives 0.1, 0.8, 0.9: wins 1, ties 1 -> (1 + 0.5) / 3
    assert M.roc_auc([0, 1, 0, 0], [0.1, 0.8, 0.8, 0.9]) == pytest.approx(0.5)
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert M.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert M.roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_roc_auc_2d_input_and_errors():
    y, s = _random_case(7, n=400)
    assert M.roc_auc(y.reshape(20, 20), s.reshape(20, 20)) == pytest.approx(roc_auc_score(y, s))
    with pytest.raises(ValueError, match="only one class"):
        M.roc_auc(np.zeros(10), np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="only one class"):
        M.roc_auc(np.ones(10), np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="NaN"):
        M.roc_auc([0, 1], [0.2, np.nan])


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_roc_curve_points_are_exact_points_of_sklearn_curve(seed):
    y, s = _random_case(seed)
    curve = M.roc_curve_points(y, s, max_points=50)
    assert len(curve["fpr"]) == len(curve["tpr"]) == len(curve["threshold"]) <= 50
    assert (curve["fpr"][0], curve["tpr"][0]) == (0.0, 0.0)
    assert (curve["fpr"][-1], curve["tpr"][-1]) == (1.0, 1.0)
    top = curve["threshold"][0]
    assert np.isfinite(top) and not np.any(s >= top) and not np.any(s >= np.float32(top))
    assert np.all(np.diff(curve["threshold"]) < 0)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    lookup = {float(t): (f, r) for f, r, t in zip(fpr, tpr, thr)}
    for f, r, t in list(zip(curve["fpr"], curve["tpr"], curve["threshold"]))[1:]:
        assert lookup[t] == pytest.approx((f, r), abs=1e-12)
    # thinned, the curve still has nearly the exact area
    assert auc(curve["fpr"], curve["tpr"]) == pytest.approx(roc_auc_score(y, s), abs=2e-3)


def test_roc_curve_points_few_distinct_scores_keeps_all():
    curve = M.roc_curve_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert curve["fpr"] == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert curve["tpr"] == [0.0, 0.5, 0.5, 1.0, 1.0]
    rows = M.curve_rows(curve)
    assert rows[1] == {"fpr": 0.0, "tpr": 0.5, "threshold": pytest.approx(0.8)}


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_pr_curve_points_match_sklearn(seed):
    y, s = _random_case(seed)
    curve = M.pr_curve_points(y, s, max_points=60)
    assert len(curve["recall"]) <= 60
    assert (curve["recall"][0], curve["precision"][0]) == (0.0, 1.0)
    assert curve["recall"][-1] == 1.0
    assert curve["precision"][-1] == pytest.approx(y.mean())
    precision, recall, thr = precision_recall_curve(y, s, drop_intermediate=False)
    lookup = {float(t): (r, p) for p, r, t in zip(precision, recall, thr)}
    for r, p, t in list(zip(curve["recall"], curve["precision"], curve["threshold"]))[1:]:
        assert lookup[t] == pytest.approx((r, p), abs=1e-12)


def test_curve_max_points_validated():
    with pytest.raises(ValueError, match="max_points"):
        M.roc_curve_points([0, 1, 0], [0.1, 0.2, 0.3], max_points=1)


# ---------------------------------------------------------------------------------------------
# protocols


def test_protocol_metrics_threshold_is_strict_and_mask_selects():
    y = np.array([1, 0, 1, 0, 0])
    s = np.array([0.9, 0.5, 0.5, 0.2, 0.7])  # 0.5 is NOT vessel
    out = M.protocol_metrics(y, s)
    assert (out["tp"], out["fp"], out["fn"], out["tn"]) == (1, 1, 1, 2)
    assert out["auc"] == pytest.approx(roc_auc_score(y, s))
    masked = M.protocol_metrics(y, s, mask=np.array([1, 1, 1, 1, 0]))
    assert (masked["tp"], masked["fp"], masked["fn"], masked["tn"]) == (1, 0, 1, 2)
    assert masked["auc"] == pytest.approx(roc_auc_score(y[:4], s[:4]))
    assert M.protocol_metrics(y, s, threshold=0.4)["tp"] == 2


def _image(size, inner, inside, frame_score):
    """A size x size image whose FOV is the centred inner x inner square.

    `inside` lists (truth, score, how many) for the FOV pixels, in raster order; the frame outside
    the FOV is background in truth and scored `frame_score` (predicted background).
    """
    label = np.zeros((size, size), dtype=np.uint8)
    prob = np.full((size, size), frame_score, dtype=np.float32)
    fov = np.zeros((size, size), dtype=bool)
    lo = (size - inner) // 2
    fov[lo : lo + inner, lo : lo + inner] = True
    truth = np.concatenate([[t] * n for t, _, n in inside])
    scores = np.concatenate([[s] * n for _, s, n in inside])
    assert truth.size == inner * inner
    idx = np.flatnonzero(fov.ravel())
    label.ravel()[idx] = truth
    prob.ravel()[idx] = scores
    return label, prob, fov


def _synthetic_images():
    """Two images with a background frame outside the FOV, counts worked out by hand.

    A (10 x 10, FOV 6 x 6 = 36 pixels, frame 64 at score 0.1): 6 vessel found (0.9), 2 vessel
    missed (0.3), 2 false positives (0.8), 26 true negatives (0.2).
    B (8 x 8, FOV 4 x 4 = 16 pixels, frame 48 at score 0.05): 4 vessel found (0.95), 1 false
    positive (0.6), 11 true negatives (0.1).
    """
    a = _image(10, 6, [(1, 0.9, 6), (1, 0.3, 2), (0, 0.8, 2), (0, 0.2, 26)], 0.1)
    b = _image(8, 4, [(1, 0.95, 4), (0, 0.6, 1), (0, 0.1, 11)], 0.05)
    return [a, b]


def test_paper_vs_fov_protocols_by_hand():
    labels, probs, fovs = zip(*_synthetic_images())
    out = M.evaluate(list(labels), list(probs), list(fovs))
    fov, paper = out["fov"], out["paper"]
    # inside the FOV: tp 6+4, fp 2+1, fn 2+0, tn 26+11
    assert (fov["tp"], fov["fp"], fov["fn"], fov["tn"]) == (10, 3, 2, 37)
    # the frames (64 + 48 pixels) are all true negatives under `paper`
    outside_tn = 64 + 48
    assert (paper["tp"], paper["fp"], paper["fn"]) == (10, 3, 2)
    assert paper["tn"] == fov["tn"] + outside_tn == 149
    assert sum(paper[k] for k in ("tp", "fp", "fn", "tn")) == 100 + 64
    assert fov["accuracy"] == pytest.approx(47 / 52)
    assert paper["accuracy"] == pytest.approx(159 / 164)
    assert fov["specificity"] == pytest.approx(37 / 40)
    assert paper["specificity"] == pytest.approx(149 / 152)
    assert paper["accuracy"] > fov["accuracy"] and paper["specificity"] > fov["specificity"]
    # F1, sensitivity and precision ignore true negatives: the same under both protocols
    for name in ("f1", "sensitivity", "precision", "iou"):
        assert paper[name] == fov[name]
    assert fov["f1"] == pytest.approx(20 / 25)
    # the frame scores sit below every in-FOV score: extra easy negatives raise the AUC
    y = np.concatenate([a.ravel() for a in labels])
    p = np.concatenate([a.ravel() for a in probs])
    f = np.concatenate([a.ravel() for a in fovs])
    assert paper["auc"] == pytest.approx(roc_auc_score(y, p))
    assert fov["auc"] == pytest.approx(roc_auc_score(y[f], p[f]))
    assert paper["auc"] > fov["auc"]


def test_evaluate_returns_plain_python_scalars():
    labels, probs, fovs = zip(*_synthetic_images())
    out = M.evaluate(list(labels), list(probs), list(fovs))
    assert set(out) == {"paper", "fov"}
    keys = {"f1", "accuracy", "auc", "sensitivity", "specificity", "precision", "iou", "mcc",
            "tp", "fp", "fn", "tn"}
    for protocol in out.values():
        assert set(protocol) == keys
        assert all(type(v) in (int, float) for v in protocol.values())


def test_evaluate_validates_inputs():
    labels, probs, fovs = zip(*_synthetic_images())
    with pytest.raises(ValueError, match="one entry per image"):
        M.evaluate(list(labels), list(probs)[:1], list(fovs))
    with pytest.raises(ValueError, match="shapes differ"):
        M.evaluate([labels[0]], [probs[1]], [fovs[0]])


def test_per_image_metrics_rows():
    labels, probs, fovs = zip(*_synthetic_images())
    rows = M.per_image_metrics(list(labels), list(probs), list(fovs), ["01", "02"])
    assert [(r["stem"], r["protocol"]) for r in rows] == [
        ("01", "paper"), ("01", "fov"), ("02", "paper"), ("02", "fov"),
    ]
    assert (rows[1]["tp"], rows[1]["fp"], rows[1]["fn"], rows[1]["tn"]) == (6, 2, 2, 26)
    assert rows[0]["tn"] == 26 + 64
    assert rows[3]["f1"] == pytest.approx(8 / 9)


# ---------------------------------------------------------------------------------------------
# 8-bit PNG round trip


def test_probability_png_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    p = rng.random((37, 53)).astype(np.float32)
    p[0, :4] = [0.0, 1.0, 0.5 / 255, 254.5 / 255]  # ends and half-way values
    path = tmp_path / "prob.png"
    Image.fromarray(M.probability_to_uint8(p)).save(path)
    with Image.open(path) as im:
        assert im.mode == "L"
        back = M.uint8_to_probability(np.asarray(im))
    assert back.shape == p.shape
    assert np.max(np.abs(back - p)) <= 0.5 / 255 + 1e-6
    assert back[0, 0] == 0.0 and back[0, 1] == 1.0


def test_probability_to_uint8_values():
    assert M.probability_to_uint8(np.array([0.0, 1.0, 0.2, -0.1, 1.3])).tolist() == [
        0, 255, 51, 0, 255,
    ]
    with pytest.raises(ValueError, match="uint8"):
        M.uint8_to_probability(np.array([1.0]))


def test_curves_from_8bit_levels_equal_the_sorted_computation():
    """The histogram path for uint8 scores gives exactly the curve of the general path."""
    from skunet.metrics import pr_curve_points, roc_curve_points

    rng = np.random.default_rng(3)
    y = rng.random(20000) < 0.1
    levels = np.clip(rng.normal(100, 40, y.size) + 60 * y, 0, 255).astype(np.uint8)
    for curve in (roc_curve_points, pr_curve_points):
        fast, slow = curve(y, levels, 10_000), curve(y, levels.astype(np.float64), 10_000)
        assert fast.keys() == slow.keys()
        for key in fast:
            np.testing.assert_allclose(fast[key][1:], slow[key][1:])
