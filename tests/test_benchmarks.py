"""The benchmarks run end to end at a tiny size (their figures are measured by hand, not here)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import ROOT


@pytest.mark.slow
def test_dropblock_mask_benchmark_times_the_three_masks_for_both_models_and_paths(tmp_path):
    out = tmp_path / "masks.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dropblock_mask.py"), "--size", "48", "--batch", "2", "--reps", "1",
         "--out", str(out)],
        capture_output=True, text=True, check=True, timeout=300,
    )
    rows = re.findall(r"^(\w+)\s+(fast|fp32).*\(max pool\), .*\(float seeds\), .*\(current\): [\d.]+x, [\d.]+x; "
                      r"GB per step [\d.]+, [\d.]+, [\d.]+$", result.stdout, re.M)
    assert rows == [("unet_dropblock", "fast"), ("unet_dropblock", "fp32"), ("skunet", "fast"), ("skunet", "fp32")]
    report = json.loads(out.read_text())
    for row in report["rows"]:
        gb = row["gb_per_step"]
        # the byte seeds and the and-passes move less than float seeds, and both far less than the
        # float max pool
        assert gb["current"] < gb["float seeds"] < gb["max pool"], row


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
        assert re.search(r"GFLOP .* GB .* kernels per step\s+epoch floor\s+[\d.]+ s \(FLOPs [\d.]+ s, bytes [\d.]+ s\)"
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
    assert unet["kernels_per_step"] < dropblock["kernels_per_step"] < skunet["kernels_per_step"]
    for m in report["models"]:
        other = m["other_epoch_floor"]
        # 32 px: at 5 us a launch, the kernels' launches outlast their bytes and FLOPs at those rates
        assert other["floor_s"] == pytest.approx(m["kernels_per_step"] * 5e-6 * 468 / 8)
        assert other["flops_s"] == pytest.approx(m["gflop_per_step"] * 1e9 / 989e12 * 468 / 8)
        assert other["bytes_s"] == pytest.approx(m["gb_per_step"] * 1e9 / 3.35e12 * 468 / 8)
    assert report["other_trainings_floor_s"] == pytest.approx(
        report["epochs"] * sum(m["other_epoch_floor"]["floor_s"] for m in report["models"]))


def _throughput_module():
    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "benchmarks" / "train_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_traffic_counter_counts_each_storage_once_and_records_no_views():
    counter_type = _throughput_module().TrafficCounter
    a = torch.zeros(1000)  # 4000 bytes
    mask = torch.zeros(100, dtype=torch.bool)
    one = torch.ones(1)
    counter = counter_type()
    with counter:
        b = a * 2  # reads 4000, writes 4000
        v = b.view(10, 100)  # a view: no kernel
        m = mask[1:] | mask[:-1]  # two overlapping views of one storage: the storage read once
        v.add_(1)  # in place: reads and writes the same 4000 bytes
        c = a * one.expand(1000)  # a broadcast view: its storage, 4 bytes, is what is read
        d = torch.cat(a.split(500))  # two disjoint halves: the whole storage read
        a.copy_(b)  # overwrites a: reads b, writes a
        mask.bernoulli_(0.5)  # overwrites: writes 100
    assert counter.ops == [
        ("mul", 8000.0, 0.0),
        ("bitwise_or", 199.0, 0.0),
        ("add_", 8000.0, 0.0),
        ("mul", 8004.0, 0.0),
        ("cat", 8000.0, 0.0),
        ("copy_", 8000.0, 0.0),
        ("bernoulli_", 100.0, 0.0),
    ]
    assert m.shape == (99,) and c.shape == d.shape == (1000,)


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


def test_floor_is_the_roofline_sum_or_the_launches_whichever_is_longer():
    floor = _throughput_module().floor_s
    per_op = [[3e12, 1e12], [1e12, 4e12]]  # (bytes, FLOPs): 3 s of bytes, then 4 s of FLOPs
    assert floor(per_op, flop_rate=1e12, bandwidth=1e12, launch_s=0.0) == pytest.approx(7.0)
    assert floor(per_op, flop_rate=1e12, bandwidth=1e12, launch_s=2.0) == pytest.approx(7.0)
    assert floor(per_op, flop_rate=1e12, bandwidth=1e12, launch_s=5.0) == pytest.approx(10.0)


@pytest.mark.slow
def test_a_throughput_benchmark_stopped_part_way_keeps_the_models_it_measured(tmp_path):
    """A lease's first minute may stop the benchmark: its JSON is rewritten after each model, whole
    (no temporary left beside it), so what was measured comes back."""
    out = tmp_path / "result.json"
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--fast-only",
                             "--size", "32", "--steps", "1", "--models", "unet", "skunet", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not out.exists() and proc.poll() is None:
            time.sleep(0.02)
        running = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(60)
    assert running, f"the file appeared only as the run ended: {proc.stderr.read()[-2000:]}"
    report = json.loads(out.read_text())
    assert report["models_planned"] == ["unet", "skunet"] and report["models"][0]["model"] == "unet"
    assert report["models"][0]["fast_images_per_s"] > 0 and report["trainings_s"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
