"""The benchmarks run end to end at a tiny size (their figures are measured by hand, not here)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_dropblock_mask_benchmark_times_both_masks_for_both_models_and_paths():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dropblock_mask.py"), "--size", "48", "--batch", "2", "--reps", "1"],
        capture_output=True, text=True, check=True, timeout=300,
    )
    rows = re.findall(r"^(\w+)\s+(fast|fp32).*\(max pool\) ->.*\(current\): [\d.]+x$", result.stdout, re.M)
    assert rows == [("unet_dropblock", "fast"), ("unet_dropblock", "fp32"), ("skunet", "fast"), ("skunet", "fp32")]


@pytest.mark.slow
def test_throughput_benchmark_prints_ratio_throughput_and_floor_per_model(tmp_path):
    out = tmp_path / "result.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--size", "32", "--steps", "1", "--out", str(out)],
        capture_output=True, text=True, check=True, timeout=600,
    )
    for model in ("unet", "unet_dropblock", "skunet"):
        line = next(line for line in result.stdout.splitlines() if line.startswith(model + " "))
        assert re.search(r"fast/naive\s+[\d.]+x.*GFLOP/step\s+epoch floor\s+[\d.]+ s.*first step [\d.]+ s$", line), line
    report = json.loads(out.read_text())
    assert report["size"] == 32 and [m["model"] for m in report["models"]] == ["unet", "unet_dropblock", "skunet"]
    # SKU-Net's SK blocks cost about twice U-Net's FLOPs (1136 against 593 GFLOP a step at 592 px)
    unet, _, skunet = report["models"]
    assert all(m["fast_warmup_s"] > 0 and m["naive_warmup_s"] > 0 for m in report["models"])
    assert skunet["gflop_per_step"] > 1.5 * unet["gflop_per_step"] > 0
