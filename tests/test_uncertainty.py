"""skunet.uncertainty: level histograms and their AUC against scikit-learn, the paired bootstrap
against a brute-force NumPy bootstrap, pairing, seeding, edge cases and the ranking verdict."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from skunet import metrics as M
from skunet import uncertainty as U

SEEDS = [0, 1, 2]
ORDER = ["skunet", "unet_dropblock", "unet"]


def _random_pixels(seed: int, n: int = 4000):
    """Labels and 8-bit levels crowded into a few values, so ties are everywhere."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.15
    levels = np.clip(np.rint(rng.normal(120 + 40 * y, 25) / 16) * 16, 0, 255).astype(np.uint8)
    return y, levels


def _image_counts(f1: float, vessel: int, background: int) -> list[int]:
    """tp, fp, fn, tn of an image with `vessel` vessel pixels and the given F1 (fp = fn)."""
    e = round(vessel * (1 - f1))  # F1 = 2 tp / (2 tp + fp + fn) = 1 - e / vessel
    return [vessel - e, e, e, background - e]


def _hists(counts) -> np.ndarray:
    """Level histograms matching counts: tp at 200, fn at 60, fp at 190, tn at 40 (and 100)."""
    out = []
    for tp, fp, fn, tn in np.asarray(counts).tolist():
        h = np.zeros((2, 256), dtype=np.int64)
        h[1, 200], h[1, 60] = tp, fn
        h[0, 190], h[0, 40], h[0, 100] = fp, tn - tn // 3, tn // 3
        out.append(h)
    return np.stack(out)


def _model(f1s, vessels, backgrounds):
    counts = np.array([_image_counts(f, v, b) for f, v, b in zip(f1s, vessels, backgrounds)])
    return counts, _hists(counts)


def _run(models: dict, pairs=(), n_resamples=1000, seed=0, **kw):
    counts = {k: v[0] for k, v in models.items()}
    hists = {k: v[1] for k, v in models.items()}
    return U.paired_bootstrap(counts, hists, pairs, n_resamples=n_resamples, seed=seed, **kw)


def _difference(result, a, b, metric="f1"):
    (d,) = [d for d in result["differences"] if (d["a"], d["b"], d["metric"]) == (a, b, metric)]
    return d


def _varied_models(n: int = 20, margin: float = 0.01, seed: int = 0):
    """Per-image F1 from 0.45 to 0.9 (strongly varying difficulty); each model a constant
    `margin` above the next on every image."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.45, 0.9, n)
    vessels = rng.integers(10000, 30000, n)
    backgrounds = 8 * vessels
    return {
        name: _model(base + margin * (len(ORDER) - 1 - k), vessels, backgrounds)
        for k, name in enumerate(ORDER)
    }


# ---------------------------------------------------------------------------------------------
# histograms and their AUC


@pytest.mark.parametrize("seed", SEEDS)
def test_level_histograms_count_each_level_per_class(seed):
    y, lv = _random_pixels(seed)
    h = U.level_histograms(y, lv)
    assert h.shape == (2, 256) and h.dtype == np.int64
    assert h.sum() == y.size and h[1].sum() == y.sum()
    np.testing.assert_array_equal(h[1], np.bincount(lv[y], minlength=256))
    np.testing.assert_array_equal(h[0], np.bincount(lv[~y], minlength=256))
    mask = np.random.default_rng(seed + 10).random(y.size) < 0.6
    hm = U.level_histograms(y.astype(np.uint8), lv, mask=mask.astype(np.uint8))
    np.testing.assert_array_equal(hm, U.level_histograms(y[mask], lv[mask]))
    assert hm.sum() == mask.sum()


@pytest.mark.parametrize("seed", SEEDS)
def test_auc_from_histograms_equals_sklearn_with_ties_and_mask(seed):
    y, lv = _random_pixels(seed)
    assert len(np.unique(lv)) < 20  # heavy ties
    expected = roc_auc_score(y, lv)
    assert U.auc_from_histograms(U.level_histograms(y, lv)) == pytest.approx(expected, abs=1e-12)
    assert U.auc_from_histograms(U.level_histograms(y, lv)) == pytest.approx(
        M.roc_auc(y, lv), abs=1e-12
    )
    mask = np.random.default_rng(seed + 10).random(y.size) < 0.5
    masked = U.auc_from_histograms(U.level_histograms(y, lv, mask=mask))
    assert masked == pytest.approx(roc_auc_score(y[mask], lv[mask]), abs=1e-12)


def test_summed_histograms_give_the_pooled_auc_of_images_of_any_shape():
    images = [_random_pixels(s, n) for s, n in [(0, 500), (1, 3000), (2, 80)]]
    pooled = sum(U.level_histograms(y.reshape(-1, 10), lv.reshape(-1, 10)) for y, lv in images)
    y = np.concatenate([y for y, _ in images])
    lv = np.concatenate([lv for _, lv in images])
    assert U.auc_from_histograms(pooled) == pytest.approx(roc_auc_score(y, lv), abs=1e-12)


def test_histogram_input_errors():
    y, lv = _random_pixels(0, 100)
    with pytest.raises(ValueError, match="probability_to_uint8"):
        U.level_histograms(y, lv / 255.0)
    with pytest.raises(ValueError, match="binary"):
        U.level_histograms(np.where(y, 255, 0), lv)
    with pytest.raises(ValueError, match="same shape"):
        U.level_histograms(y, lv[:-1])
    with pytest.raises(ValueError, match="0..255"):
        U.level_histograms(y, lv.astype(np.int64) + 200)
    with pytest.raises(ValueError, match="only one class"):
        U.auc_from_histograms(U.level_histograms(np.zeros(100, bool), lv))
    with pytest.raises(ValueError, match="shape"):
        U.auc_from_histograms(np.ones((2, 255), dtype=int))


# ---------------------------------------------------------------------------------------------
# the statistic and the bootstrap against brute force


def test_resampled_metrics_equal_brute_force_pooling_for_any_leading_shape():
    rng = np.random.default_rng(3)
    n = 6
    models = [
        _model(rng.uniform(0.3, 0.9, n), rng.integers(50, 5000, n), rng.integers(5000, 50000, n))
        for _ in range(2)
    ]
    c = np.stack([m[0] for m in models])
    h = np.stack([m[1] for m in models])
    idx = rng.integers(0, n, (3, 4, n))
    got = U.resampled_metrics(c, h, idx)
    assert got.shape == (2, 3, 3, 4)
    for m in range(2):
        for i, j in np.ndindex(3, 4):
            pick = idx[i, j]
            scores = M.scores_from_counts(dict(zip(M.COUNT_NAMES, c[m, pick].sum(0).tolist())))
            hist = h[m, pick].sum(0)
            assert got[m, 0, i, j] == scores["f1"]
            assert got[m, 1, i, j] == scores["accuracy"]
            assert got[m, 2, i, j] == U.auc_from_histograms(hist)


def test_percentile_interval_equals_brute_force_pooled_bootstrap():
    """Images of very different sizes: one large good image, three small poor ones. The interval
    must be the percentile interval of the *pooled* metrics on the same resampled images
    (scipy draws them as default_rng(seed).integers(0, n, (B, n))); per-image averages would
    give a clearly different interval."""
    f1s, vessels = [0.9, 0.3, 0.35, 0.4], [100000, 300, 200, 400]
    backgrounds = [600000, 3000, 2000, 4000]
    models = {"a": _model(f1s, vessels, backgrounds)}
    counts, hists = models["a"]
    n, b, seed = len(f1s), 300, 7
    result = _run(models, n_resamples=b, seed=seed)
    idx = np.random.default_rng(seed).integers(0, n, (b, n))

    def pooled(pick):
        s = M.scores_from_counts(dict(zip(M.COUNT_NAMES, counts[pick].sum(0).tolist())))
        h = hists[pick].sum(0)  # AUC by scikit-learn on the weighted levels, independently
        y, levels = np.repeat([0, 1], 256), np.tile(np.arange(256), 2)
        auc = roc_auc_score(y, levels, sample_weight=h.ravel())
        return s["f1"], s["accuracy"], auc

    brute = np.array([pooled(pick) for pick in idx])  # (B, 3)
    full = pooled(np.arange(n))
    for j, metric in enumerate(U.METRICS):
        got = result["models"]["a"][metric]
        low, high = np.percentile(brute[:, j], [2.5, 97.5])
        assert got["value"] == pytest.approx(full[j], abs=1e-12), metric
        assert got["low"] == pytest.approx(low, abs=1e-12), metric
        assert got["high"] == pytest.approx(high, abs=1e-12), metric

    per_image_f1 = np.array(
        [M.scores_from_counts(dict(zip(M.COUNT_NAMES, r)))["f1"] for r in counts.tolist()]
    )
    assert abs(result["models"]["a"]["f1"]["value"] - per_image_f1.mean()) > 0.3
    averaged_high = np.percentile(per_image_f1[idx].mean(axis=1), 97.5)
    assert abs(result["models"]["a"]["f1"]["high"] - averaged_high) > 0.1


def test_difference_interval_is_the_percentile_of_paired_differences():
    models = _varied_models(n=10, seed=4)
    result = _run(models, [("skunet", "unet")], n_resamples=400, seed=5)
    n = 10
    idx = np.random.default_rng(5).integers(0, n, (400, n))
    c = np.stack([models[m][0] for m in ("skunet", "unet")])
    h = np.stack([models[m][1] for m in ("skunet", "unet")])
    per = U.resampled_metrics(c, h, idx)  # (2, 3, B)
    for j, metric in enumerate(U.METRICS):
        d = _difference(result, "skunet", "unet", metric)
        diff = per[0, j] - per[1, j]
        low, high = np.percentile(diff, [2.5, 97.5])
        assert d["low"] == pytest.approx(low, abs=1e-12)
        assert d["high"] == pytest.approx(high, abs=1e-12)
        assert d["value"] == pytest.approx(
            result["models"]["skunet"][metric]["value"] - result["models"]["unet"][metric]["value"],
            abs=1e-15,
        )
        expected_p = min(1.0, 2 * min(np.mean(diff <= 0), np.mean(diff >= 0)))
        assert d["p_value"] == pytest.approx(expected_p)


# ---------------------------------------------------------------------------------------------
# known answers and edge cases


@pytest.mark.parametrize("method", ["percentile", "BCa"])
def test_identical_images_give_point_intervals(method):
    one = _image_counts(0.8, 9000, 90000)
    other = _image_counts(0.7, 9000, 90000)
    models = {
        "x": _model([0.8] * 5, [9000] * 5, [90000] * 5),
        "x_copy": _model([0.8] * 5, [9000] * 5, [90000] * 5),
        "y": _model([0.7] * 5, [9000] * 5, [90000] * 5),
    }
    result = _run(models, [("x", "x_copy"), ("x", "y")], n_resamples=200, method=method)
    assert result["method"] == method
    for name, ref in (("x", one), ("y", other)):
        expected = M.scores_from_counts(dict(zip(M.COUNT_NAMES, ref)))
        for metric, got in result["models"][name].items():
            assert got["low"] == got["value"] == got["high"], (name, metric)
            if metric != "auc":
                assert got["value"] == expected[metric]
    for metric in U.METRICS:
        same = _difference(result, "x", "x_copy", metric)
        assert (same["value"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
        assert same["p_value"] == 1.0 and same["supported"] is False
        apart = _difference(result, "x", "y", metric)
        assert apart["low"] == apart["value"] == apart["high"] > 0
        assert apart["p_value"] == 0.0 and apart["supported"] is True


def test_pairing_resolves_a_small_constant_margin_that_separate_intervals_do_not():
    models = _varied_models(n=20, margin=0.01)
    result = _run(models, [("skunet", "unet_dropblock")])
    a, b = result["models"]["skunet"]["f1"], result["models"]["unet_dropblock"]["f1"]
    assert a["low"] < b["high"]  # separate intervals overlap...
    d = _difference(result, "skunet", "unet_dropblock")
    assert d["low"] > 0 and d["supported"] is True  # ...the paired difference excludes 0
    assert d["p_value"] == 0.0
    assert d["value"] == pytest.approx(0.01, abs=2e-3)
    # resampling the two models' images independently instead cannot tell them apart
    names = ["skunet", "unet_dropblock"]
    c = np.stack([models[m][0] for m in names])
    h = np.stack([models[m][1] for m in names])
    rng = np.random.default_rng(0)
    own = [
        U.resampled_metrics(c[k : k + 1], h[k : k + 1], rng.integers(0, 20, (1000, 20)))
        for k in range(2)
    ]
    low, high = np.percentile(own[0][0, 0] - own[1][0, 0], [2.5, 97.5])
    assert low < 0 < high


def test_seeded():
    models = _varied_models(n=8)
    pairs = U.consecutive_pairs(ORDER)
    first = _run(models, pairs, n_resamples=200, seed=11)
    assert first == _run(models, pairs, n_resamples=200, seed=11)
    other = _run(models, pairs, n_resamples=200, seed=12)
    assert other != first
    assert other["models"]["unet"]["f1"]["low"] != first["models"]["unet"]["f1"]["low"]
    assert other["models"]["unet"]["f1"]["value"] == first["models"]["unet"]["f1"]["value"]


def _json_types_only(obj) -> bool:
    if isinstance(obj, dict):
        return all(type(k) is str and _json_types_only(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_json_types_only(v) for v in obj)
    return type(obj) in (str, int, float, bool)


def test_output_is_json_ready_and_complete():
    result = _run(_varied_models(n=8), U.consecutive_pairs(ORDER), n_resamples=100, seed=3)
    assert _json_types_only(result)
    assert json.loads(json.dumps(result)) == result
    assert {k: result[k] for k in ("n_images", "n_resamples", "seed", "confidence", "method")} == {
        "n_images": 8, "n_resamples": 100, "seed": 3, "confidence": 0.95, "method": "percentile"
    }
    assert set(result["models"]) == set(ORDER)
    for per_metric in result["models"].values():
        assert set(per_metric) == set(U.METRICS)
        for v in per_metric.values():
            assert v["low"] <= v["value"] <= v["high"]
    assert len(result["differences"]) == 2 * len(U.METRICS)
    for d in result["differences"]:
        assert set(d) == {"a", "b", "metric", "value", "low", "high", "p_value", "supported"}
        assert 0.0 <= d["p_value"] <= 1.0


def test_input_errors():
    good = _model([0.8, 0.7, 0.6], [1000] * 3, [9000] * 3)
    with pytest.raises(ValueError, match="at least 2 test images"):
        _run({"a": (good[0][:1], good[1][:1])})
    with pytest.raises(ValueError, match="same images"):
        _run({"a": good, "b": (good[0][:2], good[1][:2])})
    with pytest.raises(ValueError, match="same images"):
        _run({"a": (good[0], good[1][:2])})
    with pytest.raises(ValueError, match="same models"):
        U.paired_bootstrap({"a": good[0]}, {"b": good[1]}, n_resamples=10, seed=0)
    with pytest.raises(ValueError, match="same protocol"):
        _run({"a": (good[0], good[1] * 2)})
    with pytest.raises(ValueError, match="unknown model"):
        _run({"a": good}, [("a", "b")])
    with pytest.raises(ValueError, match="itself"):
        _run({"a": good}, [("a", "a")])
    with pytest.raises(ValueError, match="method"):
        _run({"a": good}, method="basic")
    with pytest.raises(ValueError, match="n_resamples"):
        _run({"a": good}, n_resamples=0)
    no_vessel = good[0].copy()
    no_vessel[1] = [0, 5, 0, 10995]
    with pytest.raises(ValueError, match="vessel and background"):
        _run({"a": (no_vessel, _hists(no_vessel))})


def test_fast_enough_for_1000_resamples_of_3_models_on_20_images():
    models = _varied_models(n=20)
    start = time.perf_counter()
    _run(models, U.consecutive_pairs(ORDER), n_resamples=1000)
    assert time.perf_counter() - start < 2.0


# ---------------------------------------------------------------------------------------------
# the ranking verdict


def _result_with(diffs: dict[tuple[str, str], tuple[float, float, float]]) -> dict:
    return {
        "n_images": 20,
        "confidence": 0.95,
        "differences": [
            {"a": a, "b": b, "metric": "f1", "value": v, "low": lo, "high": hi}
            for (a, b), (v, lo, hi) in diffs.items()
        ],
    }


def test_ranking_verdict_cases():
    pairs = U.consecutive_pairs(ORDER)
    assert pairs == [("skunet", "unet_dropblock"), ("unet_dropblock", "unet")]
    supported = _result_with({pairs[0]: (0.01, 0.004, 0.02), pairs[1]: (0.005, 0.001, 0.01)})
    v = U.ranking_verdict(supported, ORDER)
    assert v["verdict"] == "supported" and v["claim"] == "skunet > unet_dropblock > unet"
    assert "supported at 95%" in v["sentence"] and "\n" not in v["sentence"]
    open_ = _result_with({pairs[0]: (0.01, 0.004, 0.02), pairs[1]: (0.002, -0.001, 0.006)})
    v = U.ranking_verdict(open_, ORDER)
    assert v["verdict"] == "unresolved" and "unet_dropblock - unet" in v["sentence"]
    # stored the other way round (unet - unet_dropblock), and below 0 once negated
    against = _result_with(
        {pairs[0]: (0.01, 0.004, 0.02), ("unet", "unet_dropblock"): (0.004, 0.001, 0.008)}
    )
    v = U.ranking_verdict(against, ORDER)
    assert v["verdict"] == "contradicted"
    assert "unet_dropblock - unet = -0.0040 [-0.0080, -0.0010]" in v["sentence"]
    # contradicted wins over unresolved
    mixed = _result_with({pairs[0]: (0.0, -0.01, 0.01), pairs[1]: (-0.01, -0.02, -0.004)})
    assert U.ranking_verdict(mixed, ORDER)["verdict"] == "contradicted"
    with pytest.raises(ValueError, match="no f1 difference"):
        U.ranking_verdict(_result_with({pairs[0]: (0.01, 0.004, 0.02)}), ORDER)
    with pytest.raises(ValueError, match="metric"):
        U.ranking_verdict(supported, ORDER, metric="iou")


def test_ranking_verdict_end_to_end():
    models = _varied_models(n=20, margin=0.01)
    result = _run(models, U.consecutive_pairs(ORDER))
    assert U.ranking_verdict(result, ORDER)["verdict"] == "supported"
    assert U.ranking_verdict(result, ORDER[::-1])["verdict"] == "contradicted"
    # a model better on half the images and worse on the other half: the test set cannot tell
    n = 20
    base = np.random.default_rng(1).uniform(0.5, 0.85, n)
    swing = np.where(np.arange(n) % 2 == 0, 0.02, -0.02)
    sizes = (np.full(n, 20000), np.full(n, 150000))
    noisy = {"skunet": _model(base + swing, *sizes), "unet": _model(base, *sizes)}
    result = _run(noisy, [("skunet", "unet")])
    verdict = U.ranking_verdict(result, ["skunet", "unet"])
    assert verdict["verdict"] == "unresolved", verdict["sentence"]
