"""Training throughput of the three models: the fast path against a naive path, and the FLOP floor.

    python benchmarks/train_throughput.py --dataset drive            # paper resolution, 592 px
    python benchmarks/train_throughput.py --dataset chase --steps 5  # 1008 px
    python benchmarks/train_throughput.py --size 64 --steps 1 --out /tmp/check.json  # a quick check

For each model, on the device present (CUDA if available, else CPU), in the same run:
- fast path: what training uses on CUDA: the uint8 training set held on the device, bf16 autocast,
  channels_last, fused Adam, cudnn benchmark (and torch.compile with --compile);
- naive path: fp32 eager, a torch DataLoader decoding PNG files from disk every step;
- the ratio fast / naive in images per second, and peak memory (CUDA: max allocated; CPU: the
  process's peak resident set, each measurement in a fresh process);
- the fast path's first step, which is not timed above: cudnn's autotuning and, with --compile,
  the compilation happen there, once per training;
- FLOPs per training step (forward + backward, counted by torch.utils.flop_counter) and the floor
  for one paper epoch (468 images) at the device's measured dense matmul rate;
- the time the measured models' trainings would take at the fast path's rate (params.yaml's
  epochs; validation, evaluation and start-up not counted): a plan for a GPU session.
Results print as a table and are written to benchmarks/results/<device>-<dataset>.json (--out).
On a CPU, bf16 autocast is emulated and usually slower than fp32: the ratio says so honestly.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from skunet.config import load_params
from skunet.models import MODEL_NAMES, ModelConfig, build_model
from skunet.training import BatchSource, TrainingData, forward_loss

PAPER = {"drive": (592, 8, 0.85), "chase": (1008, 4, 0.80)}
EPOCH_IMAGES = 468  # 520 augmented samples less the 10% validation split


def device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def synthetic_set(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, 2, (n, size, size), dtype=np.uint8)


class PngFiles(torch.utils.data.Dataset):
    """The naive input path: decode an image and its label from PNG files for every sample."""

    def __init__(self, folder: Path, n: int):
        self.folder, self.n = folder, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        image = np.asarray(Image.open(self.folder / f"{i}.png"), dtype=np.float32) / 255.0
        label = np.asarray(Image.open(self.folder / f"{i}_label.png"), dtype=np.float32)
        return torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(label)[None]


def matmul_rate(dev: torch.device) -> float:
    """Measured dense bf16 matmul FLOP/s (the fast path's precision): the device's practical peak."""
    n = 8192 if dev.type == "cuda" else 1024
    dtype = torch.bfloat16
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(dev)
    reps = 20 if dev.type == "cuda" else 5
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(dev)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def measure(model_name: str, dataset: str, path: str, steps: int, compile_: bool, size: int) -> dict:
    """Images/s and peak memory of one (model, path); run in its own process."""
    dev = device()
    _, batch, keep = PAPER[dataset]
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=model_name, keep_prob=keep)).to(dev).train()
    n = batch * (steps + 1)
    images, labels = synthetic_set(n, size)
    fast = path == "fast"
    if fast:
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
        net = torch.compile(model) if compile_ and dev.type == "cuda" else model
        # the training loop's own batch source: the uint8 set held on the device
        rows = np.arange(n)
        source = BatchSource(TrainingData(images, labels, rows, rows[:0], "", {}), dev,
                             on_device=True, channels_last=True)

        def batches():
            return source.batches([rows[s * batch : (s + 1) * batch] for s in range(steps + 1)])
    else:
        net = model
        pngs = tempfile.TemporaryDirectory(prefix="skunet-bench-")  # removed when measure returns
        folder = Path(pngs.name)
        for i in range(n):
            Image.fromarray(images[i]).save(folder / f"{i}.png", compress_level=1)
            Image.fromarray(labels[i]).save(folder / f"{i}_label.png", compress_level=1)
        loader = torch.utils.data.DataLoader(PngFiles(folder, n), batch_size=batch, num_workers=2)

        def batches():
            for x, y in loader:
                yield x.to(dev), y.to(dev)

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fast)  # as training does
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t_begin, t0 = time.perf_counter(), None
    for step, (x, y) in enumerate(batches()):
        if step == 1:  # the first step warms up (cudnn autotuning, compilation, allocator)
            sync(dev)
            t0 = time.perf_counter()
            warmup = t0 - t_begin
        loss = forward_loss(net, x, y, fast)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(dev)
    elapsed = time.perf_counter() - t0
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"images_per_s": steps * batch / elapsed, "peak_mib": peak, "warmup_s": warmup}


def flops_per_step(model_name: str, dataset: str, size: int) -> float:
    _, batch, keep = PAPER[dataset]
    model = build_model(ModelConfig(name=model_name, keep_prob=keep)).train()
    x, y = torch.rand(batch, 3, size, size), (torch.rand(batch, 1, size, size) > 0.9).float()
    counter = FlopCounterMode(display=False)
    with counter:
        forward_loss(model, x, y, fast=False).backward()
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(PAPER), default="drive")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path (CUDA)")
    parser.add_argument("--size", type=int, help="input size in px (default: the paper's for --dataset)")
    parser.add_argument("--out", type=Path, help="results file (default: benchmarks/results/<device>-<dataset>.json)")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.size or PAPER[args.dataset][0]

    if args.one:  # child process: one measurement, JSON on stdout
        print(json.dumps(measure(args.one[0], args.dataset, args.one[1], args.steps, args.compile, size)))
        return

    dev = device()
    name = torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU x{torch.get_num_threads()}"
    rate = matmul_rate(dev)
    batch = PAPER[args.dataset][1]
    print(f"device: {name}; measured matmul rate {rate / 1e12:.2f} TFLOP/s; {args.dataset} at {size} px, batch {batch}")
    rows = []
    for model in args.models:
        result = {"model": model}
        for path in ("fast", "naive"):
            cmd = [sys.executable, __file__, "--dataset", args.dataset, "--steps", str(args.steps),
                   "--size", str(size), "--one", model, path]
            if args.compile:
                cmd.append("--compile")
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            m = json.loads(out.strip().splitlines()[-1])
            result[f"{path}_images_per_s"] = m["images_per_s"]
            result[f"{path}_peak_mib"] = m["peak_mib"]
            result[f"{path}_warmup_s"] = m["warmup_s"]
        result["ratio"] = result["fast_images_per_s"] / result["naive_images_per_s"]
        result["gflop_per_step"] = flops_per_step(model, args.dataset, size) / 1e9
        result["epoch_floor_s"] = result["gflop_per_step"] * 1e9 * EPOCH_IMAGES / batch / rate
        result["epoch_fast_s"] = EPOCH_IMAGES / result["fast_images_per_s"]
        rows.append(result)
        print(
            f"{model:15s} fast {result['fast_images_per_s']:8.2f} img/s ({result['fast_peak_mib']:7.0f} MiB)  "
            f"naive {result['naive_images_per_s']:8.2f} img/s ({result['naive_peak_mib']:7.0f} MiB)  "
            f"fast/naive {result['ratio']:5.2f}x  {result['gflop_per_step']:8.1f} GFLOP/step  "
            f"epoch floor {result['epoch_floor_s']:8.2f} s (fast path {result['epoch_fast_s']:8.1f} s)  "
            f"first step {result['fast_warmup_s']:.1f} s"
        )
    # a planning figure: the measured models' trainings at the fast path's rate, paper epochs,
    # without validation, evaluation or start-up
    epochs = load_params(Path(__file__).parents[1] / "params.yaml")["train"]["common"]["epochs"]
    training_s = epochs * sum(r["epoch_fast_s"] for r in rows)
    print(f"{len(rows)} training(s) of {epochs} epochs on {args.dataset} at these rates: {training_s / 60:.1f} min")
    slug = "cuda" if dev.type == "cuda" else "cpu"
    out = args.out or Path(__file__).parent / "results" / f"{slug}-{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"device": name, "dataset": args.dataset, "size": size, "batch": batch, "steps": args.steps,
              "matmul_tflops": rate / 1e12, "torch": str(torch.__version__), "models": rows,
              "epochs": epochs, "trainings_s": training_s}
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
