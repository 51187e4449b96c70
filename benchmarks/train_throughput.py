"""Training throughput of the three models: the fast path against a naive path, and the floors.

    python benchmarks/train_throughput.py --dataset drive            # paper resolution, 592 px
    python benchmarks/train_throughput.py --dataset chase --steps 5  # 1008 px
    python benchmarks/train_throughput.py --size 64 --steps 1 --out /tmp/check.json  # a quick check
    python benchmarks/train_throughput.py --floors-only --floors-at 989 3.35 0  # another device's floors
    python benchmarks/train_throughput.py --fast-only --steps 3  # the fast path's img/s and memory alone (a lease's first minute)

For each model, on the device present (CUDA if available, else CPU), in the same run:
- fast path: what training uses on CUDA: the uint8 training set held on the device, bf16 autocast,
  channels_last, fused Adam, cudnn benchmark (and torch.compile with --compile);
- naive path: fp32 eager, a torch DataLoader decoding PNG files from disk every step;
- the ratio fast / naive in images per second, and peak memory (CUDA: max allocated since the
  measurement began, the fast path measured in this process: a fresh one per model spent seconds
  of a lease's first minute starting CUDA again; CPU: the process's peak resident set, each
  measurement in a fresh process);
- the fast path's first step, which is not timed above: cudnn's autotuning and, with --compile,
  the compilation happen there, once per training;
- per training step of the fast path (forward + backward): FLOPs (torch.utils.flop_counter's
  formulas), bytes moved (each eager kernel reading its inputs and writing its outputs once) and
  kernels (operators that are not views or allocations). With the device's measured bf16 matmul
  rate, copy bandwidth and cost of one tiny operator, they give the floor of one paper epoch
  (468 images): FLOPs alone, bytes alone, and the floor, each kernel taking the longer of its
  bytes and FLOPs times, or one launch per kernel if that is longer in total. --floors-at gives
  the floors at another device's rates too (counting needs no such device);
- the time the measured models' trainings would take at the floor and at the fast path's rate
  (params.yaml's epochs; validation, evaluation and start-up not counted): a plan for a GPU session.
Results print as a table and are written to benchmarks/results/<device>-<dataset>.json (--out),
rewritten after each model, so that a run stopped part-way keeps the models it measured.
On a CPU, bf16 autocast is emulated and usually slower than fp32: the ratio says so honestly.
"""

from __future__ import annotations

import argparse
import gc
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
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

from skunet.atomic import atomic_file
from skunet.config import DATASETS, MODELS, load_params, model_config
from skunet.data.batches import BatchSource, TrainingData
from skunet.models import build_model
from skunet.training import forward_loss

# the paper's input sizes, batch sizes and networks, as params.yaml holds them
PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
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


def seconds_per_call(dev: torch.device, call, warmup: int, reps: int) -> float:
    """Wall time of one `call()` on `dev`: `warmup` untimed calls, then the mean of `reps`, the
    device synchronised before each clock reading."""
    for _ in range(warmup):
        call()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(reps):
        call()
    sync(dev)
    return (time.perf_counter() - t0) / reps


def matmul_rate(dev: torch.device) -> float:
    """Measured dense bf16 matmul FLOP/s (the fast path's precision): the device's practical peak."""
    n = 8192 if dev.type == "cuda" else 1024
    a, b = (torch.randn(n, n, device=dev, dtype=torch.bfloat16) for _ in range(2))
    return 2 * n**3 / seconds_per_call(dev, lambda: a @ b, warmup=2, reps=20 if dev.type == "cuda" else 5)


def copy_rate(dev: torch.device) -> float:
    """Measured memory bandwidth in bytes/s: a large copy, counting bytes read and written."""
    n = 2**30 if dev.type == "cuda" else 2**28
    a, b = torch.ones(n, dtype=torch.uint8, device=dev), torch.empty(n, dtype=torch.uint8, device=dev)
    return 2 * n / seconds_per_call(dev, lambda: b.copy_(a), warmup=1, reps=20 if dev.type == "cuda" else 5)


def launch_time(dev: torch.device) -> float:
    """Seconds one eager operator costs at the least: a one-element add, many times."""
    t = torch.zeros(1, device=dev)
    return seconds_per_call(dev, lambda: t.add_(1), warmup=100, reps=2000)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def measure(model_name: str, dataset: str, path: str, steps: int, compile_: bool, size: int) -> dict:
    """Images/s and peak memory of one (model, path): in its own process, except the fast path on
    CUDA, whose peak (max allocated, reset below) does not need one."""
    dev = device()
    batch = PARAMS["train"][dataset]["batch_size"]
    torch.manual_seed(0)
    model = build_model(model_config(PARAMS, dataset, model_name)).to(dev).train()
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


class TrafficCounter(TorchDispatchMode):
    """Per kernel of a training step: FLOPs (torch.utils.flop_counter's formulas) and bytes moved.

    Bytes: each operator reads its inputs and writes its outputs once through device memory, which
    is what eager execution does for maps larger than the cache. Views of one storage count
    together, at most the storage once (a broadcast view counts its storage; overlapping slices of
    one map count the map once). Operators that only overwrite their destination (copy_, fill_,
    bernoulli_, ...) do not read it. Views and allocations run no kernel and are not recorded.
    """

    WRITE_ONLY = frozenset({"copy_", "fill_", "zero_", "bernoulli_", "uniform_", "normal_", "random_",
                            "exponential_"})
    NO_KERNEL = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
                           "_unsafe_view"})

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, float, float]] = []  # (operator, bytes, flops)

    @staticmethod
    def _bytes(tree) -> int:
        by_storage: dict[int, tuple[int, int]] = {}  # storage -> (bytes of its views, its size)
        for t in tree_leaves(tree):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                views, size = by_storage.get(storage.data_ptr(), (0, storage.nbytes()))
                by_storage[storage.data_ptr()] = (views + t.numel() * t.element_size(), size)
        return sum(min(views, size) for views, size in by_storage.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        name = packet.__name__
        returns = func._schema.returns
        is_view = bool(returns) and returns[0].alias_info is not None and not returns[0].alias_info.is_write
        if is_view or name in self.NO_KERNEL:
            return out
        read = (args[1:], kwargs) if name in self.WRITE_ONLY else (args, kwargs)
        moved = self._bytes(read) + self._bytes(out)
        flops = flop_registry[packet](*args, **kwargs, out_val=out) if packet in flop_registry else 0
        self.ops.append((name, float(moved), float(flops)))
        return out


def traffic_per_step(model_name: str, dataset: str, size: int) -> dict:
    """Kernels, FLOPs and bytes of one fast-path training step (forward + backward) on the device
    present, and each kernel's (bytes, FLOPs) for the floor; run in its own process."""
    dev = device()
    batch = PARAMS["train"][dataset]["batch_size"]
    torch.manual_seed(0)
    model = build_model(model_config(PARAMS, dataset, model_name)).to(dev).train()
    model = model.to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 1, size, size, device=dev) > 0.9).float()
    counter = TrafficCounter()
    with counter:
        forward_loss(model, x, y, fast=True).backward()
    return {"kernels": len(counter.ops), "bytes": sum(op[1] for op in counter.ops),
            "flops": sum(op[2] for op in counter.ops), "per_op": [op[1:] for op in counter.ops]}


def floor_s(per_op: list[list[float]], flop_rate: float, bandwidth: float, launch_s: float) -> float:
    """Floor of a step: each kernel takes at least its bytes over the bandwidth or its FLOPs over
    the matmul rate, whichever is longer (a roofline), one after the other; and launching the
    kernels takes at least one launch each. Launches overlap running kernels, so the longer of
    the two totals is the floor."""
    return max(sum(max(b / bandwidth, f / flop_rate) for b, f in per_op), len(per_op) * launch_s)


def child(args: list[str]) -> dict:
    """Run one measurement in a fresh process (peak memory is per process) and return its JSON."""
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, default="drive")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path (CUDA)")
    parser.add_argument("--size", type=int, help="input size in px (default: the paper's for --dataset)")
    parser.add_argument("--out", type=Path, help="results file (default: benchmarks/results/<device>-<dataset>.json)")
    parser.add_argument("--floors-at", nargs=3, type=float, metavar=("TFLOPS", "TBPS", "LAUNCH_US"),
                        help="also give the floors at another device's rates: bf16 matmul TFLOP/s, memory "
                             "TB/s, microseconds per kernel launch (an H100 SXM's datasheet: 989 3.35 0)")
    parser.add_argument("--floors-only", action="store_true", help="count and give floors; time nothing")
    parser.add_argument("--fast-only", action="store_true",
                        help="time the fast path alone: no naive path, no counting (seconds per model on a GPU)")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.size or PARAMS["resize"][args.dataset]["input_size"]
    if args.floors_at and (args.floors_at[0] <= 0 or args.floors_at[1] <= 0 or args.floors_at[2] < 0):
        parser.error("--floors-at: TFLOPS and TBPS must be positive, LAUNCH_US at least 0")
    if args.fast_only and (args.floors_only or args.floors_at):
        parser.error("--fast-only counts nothing: it goes with neither --floors-only nor --floors-at")

    if args.one:  # child process: one measurement, JSON on stdout
        model, path = args.one
        if path == "traffic":
            result = traffic_per_step(model, args.dataset, size)
        else:
            result = measure(model, args.dataset, path, args.steps, args.compile, size)
        print(json.dumps(result))
        return

    dev = device()
    name = torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU x{torch.get_num_threads()}"
    rates = {"tflops": matmul_rate(dev) / 1e12, "tbps": copy_rate(dev) / 1e12, "launch_us": launch_time(dev) * 1e6}
    batch = PARAMS["train"][args.dataset]["batch_size"]
    steps_per_epoch = EPOCH_IMAGES / batch
    print(f"device: {name}; measured: bf16 matmul {rates['tflops']:.2f} TFLOP/s, copy {rates['tbps']:.3f} TB/s, "
          f"{rates['launch_us']:.1f} us per kernel launch; {args.dataset} at {size} px, batch {batch}")
    other = dict(zip(("tflops", "tbps", "launch_us"), args.floors_at)) if args.floors_at else None
    if other:
        print(f"floors also at {other['tflops']:g} TFLOP/s, {other['tbps']:g} TB/s, {other['launch_us']:g} us per kernel launch")

    def epoch_floors(traffic: dict, at: dict) -> dict:
        """One paper epoch's floors at the given rates: FLOPs alone, bytes alone, and `floor_s`."""
        flop_rate, bandwidth = at["tflops"] * 1e12, at["tbps"] * 1e12
        return {"flops_s": traffic["flops"] / flop_rate * steps_per_epoch,
                "bytes_s": traffic["bytes"] / bandwidth * steps_per_epoch,
                "floor_s": floor_s(traffic["per_op"], flop_rate, bandwidth, at["launch_us"] / 1e6) * steps_per_epoch}

    epochs = PARAMS["train"]["common"]["epochs"]
    slug = "cuda" if dev.type == "cuda" else "cpu"
    out = args.out or Path(__file__).parent / "results" / f"{slug}-{args.dataset}.json"

    def write_report(rows: list[dict]) -> str:
        """Write the results file with the models measured so far (after each: a run stopped
        part-way, as a lease's first minute may stop it, keeps those); its summary line. The
        planning figures: the measured models' trainings (params.yaml's epochs) at the fast
        path's rate and at the floors; validation, evaluation and start-up not counted."""
        report = {"device": name, "dataset": args.dataset, "size": size, "batch": batch,
                  "steps": None if args.floors_only else args.steps, "rates": rates, "torch": str(torch.__version__),
                  "models_planned": list(args.models), "models": rows, "epochs": epochs}
        summary = f"{len(rows)} training(s) of {epochs} epochs on {args.dataset}"
        if not args.fast_only:
            report["trainings_floor_s"] = epochs * sum(r["epoch_floor_s"] for r in rows)
            summary += f": floor {report['trainings_floor_s'] / 60:.1f} min"
        if other:
            report["other_rates"] = other
            report["other_trainings_floor_s"] = epochs * sum(r["other_epoch_floor"]["floor_s"] for r in rows)
            summary += f" ({report['other_trainings_floor_s'] / 60:.1f} min at the other rates)"
        if not args.floors_only:
            report["trainings_s"] = epochs * sum(r["epoch_fast_s"] for r in rows)
            summary += f", at the fast path's rate {report['trainings_s'] / 60:.1f} min"
        with atomic_file(out) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
        return summary

    rows = []
    for model in args.models:
        result = {"model": model}
        if not args.floors_only:
            for path in ("fast",) if args.fast_only else ("fast", "naive"):
                if path == "fast" and dev.type == "cuda":
                    m = measure(model, args.dataset, path, args.steps, args.compile, size)
                    gc.collect()  # the model, its optimizer and its batches, before the next one
                    torch.cuda.empty_cache()
                else:
                    m = child(["--dataset", args.dataset, "--steps", str(args.steps), "--size", str(size),
                               "--one", model, path] + (["--compile"] if args.compile else []))
                for key in ("images_per_s", "peak_mib", "warmup_s"):
                    result[f"{path}_{key}"] = m[key]
            result["epoch_fast_s"] = EPOCH_IMAGES / result["fast_images_per_s"]
        if args.fast_only:
            print(f"{model:15s} fast {result['fast_images_per_s']:8.2f} img/s ({result['fast_peak_mib']:7.0f} MiB)  "
                  f"first step {result['fast_warmup_s']:.1f} s  epoch, fast path {result['epoch_fast_s']:.1f} s")
            rows.append(result)
            summary = write_report(rows)
            continue
        if not args.floors_only:
            result["ratio"] = result["fast_images_per_s"] / result["naive_images_per_s"]
        traffic = child(["--dataset", args.dataset, "--size", str(size), "--one", model, "traffic"])
        result["gflop_per_step"] = traffic["flops"] / 1e9
        result["gb_per_step"] = traffic["bytes"] / 1e9
        result["kernels_per_step"] = traffic["kernels"]
        floors = epoch_floors(traffic, rates)
        result["epoch_floor_s"] = floors["floor_s"]
        result["epoch_floor_flops_s"] = floors["flops_s"]
        result["epoch_floor_bytes_s"] = floors["bytes_s"]
        line = (f"{model:15s} {result['gflop_per_step']:7.1f} GFLOP {result['gb_per_step']:6.1f} GB "
                f"{result['kernels_per_step']:5d} kernels per step  epoch floor {floors['floor_s']:8.2f} s "
                f"(FLOPs {floors['flops_s']:.2f} s, bytes {floors['bytes_s']:.2f} s)")
        if other:
            result["other_epoch_floor"] = epoch_floors(traffic, other)
            line += f"  at the other rates {result['other_epoch_floor']['floor_s']:.2f} s"
        if not args.floors_only:
            line = (f"{model:15s} fast {result['fast_images_per_s']:8.2f} img/s ({result['fast_peak_mib']:7.0f} MiB)  "
                    f"naive {result['naive_images_per_s']:8.2f} img/s ({result['naive_peak_mib']:7.0f} MiB)  "
                    f"fast/naive {result['ratio']:5.2f}x  first step {result['fast_warmup_s']:.1f} s  "
                    f"epoch, fast path {result['epoch_fast_s']:.1f} s\n  " + line)
        rows.append(result)
        summary = write_report(rows)
        print(line)
    print(summary)


if __name__ == "__main__":
    main()
