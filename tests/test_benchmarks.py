"""The benchmarks run end to end at a tiny size (their figures are measured by hand, not here)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import ROOT


@pytest.mark.slow
def test_dropblock_mask_benchmark_times_the_three_masks_for_both_models_and_paths():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dropblock_mask.py"), "--size", "48", "--batch", "2", "--reps", "1"],
        capture_output=True, text=True, check=True, timeout=300,
    )
    rows = re.findall(r"^(\w+)\s+(fast|fp32).*\(max pool\), .*\(float seeds\), .*\(current\): [\d.]+x, [\d.]+x$",
                      result.stdout, re.M)
    assert rows == [("unet_dropblock", "fast"), ("unet_dropblock", "fp32"), ("skunet", "fast"), ("skunet", "fp32")]


@pytest.mark.slow
def test_throughput_benchmark_prints_ratio_throughput_and_floor_per_model(tmp_path):
    out = tmp_path / "result.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--size", "32", "--steps", "1",
         "--out", str(out), "--floors-at", "989", "3.35", "5"],
        capture_output=True, text=True, check=True, timeout=600,
    )
    lines = result.stdout.splitlines()
    for model in ("unet", "unet_dropblock", "skunet"):
        i = next(i for i, line in enumerate(lines) if line.startswith(model + " "))
        assert re.search(r"fast/naive\s+[\d.]+x\s+first step [\d.]+ s\s+epoch, fast path [\d.]+ s$", lines[i]), lines[i]
        assert re.search(r"GFLOP .* GB .* ops per step\s+epoch floor\s+[\d.]+ s \(FLOPs [\d.]+ s, bytes [\d.]+ s\)"
                         r"\s+at the other rates [\d.]+ s$", lines[i + 1]), lines[i + 1]
    assert re.search(r"^3 training\(s\) of \d+ epochs on drive: floor [\d.]+ min \([\d.]+ min at the other rates\), "
                     r"at the fast path's rate [\d.]+ min$", lines[-1], re.M), lines[-1]
    report = json.loads(out.read_text())
    assert report["size"] == 32 and [m["model"] for m in report["models"]] == ["unet", "unet_dropblock", "skunet"]
    assert all(report["rates"][key] > 0 for key in ("tflops", "tbps", "launch_us"))
    unet, dropblock, skunet = report["models"]
    assert all(m["fast_warmup_s"] > 0 and m["naive_warmup_s"] > 0 for m in report["models"])
    # SKU-Net's SK blocks cost about twice U-Net's FLOPs (1136 against 593 GFLOP a step at 592 px);
    # DropBlock adds no FLOPs but passes over every feature map
    assert skunet["gflop_per_step"] > 1.5 * unet["gflop_per_step"] > 0
    assert dropblock["gflop_per_step"] == unet["gflop_per_step"]
    assert skunet["gb_per_step"] > dropblock["gb_per_step"] > 1.5 * unet["gb_per_step"] > 0
    assert unet["ops_per_step"] < dropblock["ops_per_step"] < skunet["ops_per_step"]
    for m in report["models"]:
        # the roofline takes the longest of the three per operator, so it is at least each total,
        # and with 5 us per operator at least the operators' launches
        assert m["epoch_floor_s"] >= max(m["epoch_floor_flops_s"], m["epoch_floor_bytes_s"]) * (1 - 1e-9)
        other = m["other_epoch_floor"]
        assert other["roofline_s"] >= m["ops_per_step"] * 5e-6 * 468 / 8 * (1 - 1e-9)
        assert other["flops_s"] == pytest.approx(m["gflop_per_step"] * 1e9 / 989e12 * 468 / 8)
        assert other["bytes_s"] == pytest.approx(m["gb_per_step"] * 1e9 / 3.35e12 * 468 / 8)
    assert report["other_trainings_floor_s"] == pytest.approx(
        report["epochs"] * sum(m["other_epoch_floor"]["roofline_s"] for m in report["models"]))


def _throughput_module():
    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "benchmarks" / "train_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_traffic_counter_counts_each_storage_once_and_views_as_nothing():
    counter_type = _throughput_module().TrafficCounter
    a = torch.zeros(1000)  # 4000 bytes
    mask = torch.zeros(100, dtype=torch.bool)
    counter = counter_type()
    with counter:
        b = a * 2  # reads 4000, writes 4000
        v = b.view(10, 100)  # a view: nothing moves
        m = mask[1:] | mask[:-1]  # two views of one storage read once (99 bytes), 99 written
        v.add_(1)  # in place: reads and writes the same 4000 bytes
    moved = {name: moved for name, moved, _ in counter.ops}
    assert [name for name, _, _ in counter.ops] == ["mul", "view", "slice", "slice", "bitwise_or", "add_"]
    assert moved == {"mul": 8000, "view": 0, "slice": 0, "bitwise_or": 198, "add_": 8000}
    assert m.shape == (99,)


def test_traffic_counter_flops_are_the_flop_counters():
    counter_type = _throughput_module().TrafficCounter
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    x = torch.rand(2, 3, 16, 16)
    counter, reference = counter_type(), FlopCounterMode(display=False)
    with counter:
        conv(x).sum().backward()
    with reference:
        conv(x).sum().backward()
    assert sum(flops for _, _, flops in counter.ops) == reference.get_total_flops() > 0
