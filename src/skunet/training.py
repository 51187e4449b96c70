"""Training: Adam + BCE + ReduceLROnPlateau, best checkpoint by validation loss, resumable.

Two paths, one loop:
- CPU (and CUDA with fast_path off): fp32 eager, batches cut from the uint8 arrays on the host.
  Simple and deterministic for a given seed.
- CUDA fast path: the whole augmented training set lives on the GPU as uint8 (no per-step
  decoding or host copies), bf16 autocast, channels_last, fused Adam, cudnn benchmark, optional
  torch.compile.

Determinism and resume: every epoch reseeds the global RNG from (seed, epoch), so the shuffle and
the DropBlock masks of epoch e do not depend on what ran before. The full training state is saved
after every epoch (atomically); a killed run restarted with the same params and data continues
from its last completed epoch and ends with the same weights as an uninterrupted run.

Distributed: launched under torchrun (WORLD_SIZE > 1), each rank trains on its share of every
batch under DistributedDataParallel (gloo on CPU, nccl on CUDA); rank 0 validates and writes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import pickle
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from skunet.atomic import atomic_file, damaged_output, missing_output, read_array, read_json
from skunet.config import DATASETS, MODELS
from skunet.errors import OutOfTime, SkunetError, reason
from skunet.models import ModelConfig, build_model

log = logging.getLogger(__name__)

LOG_FIELDS = ("epoch", "train_loss", "val_loss", "val_f1", "lr", "seconds", "peak_mib")
# logs written before peak memory was recorded lack it
OPTIONAL_LOG_FIELDS = ("peak_mib",)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    seed: int
    factor: float
    patience: int
    min_lr: float
    validation_fraction: float
    split_mode: str
    max_train_samples: int = 0
    fast_path: bool = True
    compile: bool = False


def model_config(params: dict[str, Any], dataset: str, model: str) -> ModelConfig:
    """The ModelConfig of `model` trained on `dataset`, from validated params."""
    section = {k: v for k, v in params["models"][model].items() if k != "lr"}
    for key in ("sk_kernels", "sk_dilations"):
        if key in section:
            section[key] = tuple(section[key])
    return ModelConfig(name=model, keep_prob=params["train"][dataset]["keep_prob"], **section)


def train_config(params: dict[str, Any], dataset: str, model: str) -> TrainConfig:
    common = params["train"]["common"]
    sched = common["scheduler"]
    return TrainConfig(
        epochs=common["epochs"],
        batch_size=params["train"][dataset]["batch_size"],
        lr=params["models"][model]["lr"],
        seed=params["base"]["seed"],
        factor=sched["factor"],
        patience=sched["patience"],
        min_lr=sched["min_lr"],
        validation_fraction=params["split"]["validation_fraction"],
        split_mode=params["split"]["mode"],
        max_train_samples=common["max_train_samples"],
        fast_path=common["fast_path"],
        compile=common["compile"],
    )


# --------------------------------------------------------------------------------------- data
def split_indices(sources: np.ndarray, fraction: float, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation row indices.

    tail: the last `fraction` of the rows, as Keras `validation_split` takes them (the paper's
    lineage); augmented copies of the validation images remain in the training rows.
    by_source: whole source images (all their copies) go to validation, the last ones by index,
    so no image is seen in both.
    """
    n = len(sources)
    if mode == "tail":
        n_val = max(1, int(round(n * fraction)))
        return np.arange(n - n_val), np.arange(n - n_val, n)
    if mode == "by_source":
        unique = np.unique(sources)
        n_val = max(1, int(round(len(unique) * fraction)))
        held = np.isin(sources, unique[-n_val:])
        return np.flatnonzero(~held), np.flatnonzero(held)
    raise SkunetError(f"params.yaml: split.mode = {mode!r} must be tail or by_source")


@dataclass
class TrainingData:
    images: np.ndarray  # (N, S, S, 3) uint8, possibly memory-mapped
    labels: np.ndarray  # (N, S, S) uint8 {0, 1}
    train_idx: np.ndarray
    val_idx: np.ndarray
    fingerprint: str  # identifies the data for resume and checkpoints
    libraries: dict[str, str]  # versions that drew the augmentations (libraries.json), if recorded


def load_training_data(data_dir: Path, cfg: TrainConfig) -> TrainingData:
    """Open the augment stage's arrays and split them."""
    stage = f"augment@{data_dir.name}"
    images = read_array(data_dir / "images.npy", stage, mmap_mode="r")
    labels = read_array(data_dir / "labels.npy", stage, mmap_mode="r")
    records = read_json(data_dir / "records.json", stage, kind=list)
    try:
        sources = np.array([r["source"] for r in records])
    except (KeyError, TypeError):
        raise damaged_output(data_dir / "records.json", "not a list of rows with a 'source'", stage) from None
    records_text = (data_dir / "records.json").read_text()  # the fingerprint hashes the file as written
    train_idx, val_idx = split_indices(sources, cfg.validation_fraction, cfg.split_mode)
    if cfg.max_train_samples:
        # evenly spaced rows keep every transform and source represented in a small subset
        pick = np.linspace(0, len(train_idx) - 1, min(cfg.max_train_samples, len(train_idx)))
        train_idx = train_idx[np.unique(pick.round().astype(int))]
        val_idx = val_idx[:: max(1, len(val_idx) // max(1, cfg.max_train_samples // 4))]
    fingerprint = hashlib.sha256(
        f"{images.shape}{labels.shape}{records_text}".encode()
        + np.asarray(images[:: max(1, len(images) // 8)]).tobytes()[:1 << 20]
    ).hexdigest()[:16]
    # data augmented before libraries.json existed has none: the checkpoint then records none
    libraries_json = data_dir / "libraries.json"
    libraries = read_json(libraries_json, stage) if libraries_json.exists() else {}
    return TrainingData(images, labels, train_idx, val_idx, fingerprint, libraries)


class BatchSource:
    """Cuts float batches out of the uint8 arrays, on the host or (fast path) on the device."""

    def __init__(self, data: TrainingData, device: torch.device, on_device: bool, channels_last: bool):
        self.device = device
        self.channels_last = channels_last
        if on_device:
            # read the memory-mapped arrays once, into writable memory, then onto the device
            self.images = torch.from_numpy(np.array(data.images)).to(device)
            self.labels = torch.from_numpy(np.array(data.labels)).to(device)
        else:
            self.images, self.labels = data.images, data.labels

    def batches(self, row_lists: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The (input, label) batches for `row_lists`, in order.

        On the device the rows of all the batches go over in one (pinned, asynchronous) copy, so
        the steps themselves make no host copy and no host sync.
        """
        if isinstance(self.images, torch.Tensor):
            flat = torch.from_numpy(np.concatenate(row_lists).astype(np.int64))
            if self.device.type == "cuda":
                flat = flat.pin_memory().to(self.device, non_blocking=True)
            start = 0
            for rows in row_lists:
                idx = flat[start : start + len(rows)]
                start += len(rows)
                yield self._to_float(self.images[idx], self.labels[idx])
        else:
            for rows in row_lists:
                order = np.sort(rows)  # memory-mapped reads in file order, then restore the order
                back = np.argsort(np.argsort(rows))
                x = torch.from_numpy(np.asarray(self.images[order])[back]).to(self.device)
                y = torch.from_numpy(np.asarray(self.labels[order])[back]).to(self.device)
                yield self._to_float(x, y)

    def _to_float(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.permute(0, 3, 1, 2).float().div_(255)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.unsqueeze(1).float()


# ----------------------------------------------------------------------------------- one step
def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy (the paper's loss), on logits for stability in bf16."""
    return F.binary_cross_entropy_with_logits(logits.float(), target)


def forward_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, fast: bool) -> torch.Tensor:
    """Loss of one batch; the fast path runs the forward pass under bf16 autocast."""
    if fast:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
            return loss_fn(model(x), y)
    return loss_fn(model(x), y)


# ------------------------------------------------------------------------------ distribution
@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by torchrun; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before the process group, so NCCL binds this rank's GPU
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), world)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local)
    return torch.device("cpu")


# ---------------------------------------------------------------------------------- the loop
def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**31)


def batches(n_rows: int, batch_size: int, epoch_rng: torch.Generator) -> list[np.ndarray]:
    """One epoch's shuffled batches. A last batch of one row joins the one before: BatchNorm
    (in the SK attention above all) cannot train on a single sample."""
    perm = torch.randperm(n_rows, generator=epoch_rng).numpy()
    chunks = [perm[start : start + batch_size] for start in range(0, n_rows, batch_size)]
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [np.concatenate(chunks[-2:])]
    return chunks


@torch.no_grad()
def validate(model, source: BatchSource, rows: np.ndarray, batch_size: int, fast: bool) -> tuple[float, float]:
    """Mean BCE and pixel F1 (probability > 0.5) over the validation rows."""
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=source.device)  # loss, tp, fp, fn
    count = 0
    for x, y in source.batches([rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]):
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=fast):
            logits = model(x)
        pred, truth = logits > 0, y > 0.5
        sums += torch.stack([
            F.binary_cross_entropy_with_logits(logits.float(), y, reduction="sum").double(),
            (pred & truth).sum().double(), (pred & ~truth).sum().double(), (~pred & truth).sum().double(),
        ])
        count += y.numel()
    model.train()
    loss, tp, fp, fn = sums.tolist()  # one host sync per validation
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return loss / max(count, 1), f1


def _fingerprint(mcfg: ModelConfig, cfg: TrainConfig, data: TrainingData, world: int) -> str:
    blob = json.dumps([asdict(mcfg), asdict(cfg), data.fingerprint, world], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dvc_data_md5(dataset: str, lock: Path = Path("dvc.lock")) -> str | None:
    """md5 of data/augmented/<dataset> as dvc.lock records it, when the stage has been locked."""
    try:
        stages = yaml.safe_load(lock.read_text())["stages"]
        for out in stages[f"augment@{dataset}"]["outs"]:
            if out["path"] == f"data/augmented/{dataset}":
                return out["md5"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        pass
    return None


def save_atomic(obj: Any, path: Path) -> None:
    """`torch.save` to `path` through a temporary file, writing by file handle.

    Given a path, torch.save names the archive's root folder after the file, here the random
    temporary name, so two identical checkpoints would differ byte for byte and DVC would see a
    changed output; given a handle, the root is always `archive`. The handle is a buffer, written
    out in one go: torch reports a failed write (a full disk) as a RuntimeError without the OS's
    reason, a plain write raises the OSError that names it.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_file(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


DEADLINE_ENV = "SKUNET_DEADLINE"
# On the CPU, the rate of a training's first steps says up front how long it will take.
ESTIMATE_AFTER_STEPS = 3
LONG_S = 3600.0


def step_flops(mcfg: ModelConfig, size: int) -> float:
    """FLOPs of one image's training step (forward and backward) at `size` px, counted on the meta
    device (torch.utils.flop_counter's formulas, nothing computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net, x = build_model(mcfg), torch.empty(2, 3, size, size)  # SK attention's BatchNorm needs 2
    net.train()
    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    return counter.get_total_flops() / 2


def six_trainings_factor(params: dict[str, Any], dataset: str, model: str) -> float:
    """How many times this training's work the six trainings are, by FLOPs per training step.
    Both datasets train on 20 source images with the same augmentations (data.raw's splits), so
    an epoch has as many images in each and the FLOPs per image weigh the trainings."""
    def flops(d: str, m: str) -> float:
        return step_flops(model_config(params, d, m), params["resize"][d]["input_size"])

    return sum(flops(d, m) for d in DATASETS for m in MODELS) / flops(dataset, model)


def warn_if_long(seconds: float, images: int, per_epoch: int, epochs: int, name: str,
                 six: Callable[[], float] | None = None) -> float:
    """Log how long a training will take at the rate of its first `images`, when over an hour
    (a paper-profile run on a CPU), and, given `six` (:func:`six_trainings_factor`, called only
    then), how long the six trainings take at that rate; returns this training's estimate in s."""
    estimate = seconds / images * per_epoch * epochs
    if estimate > LONG_S:
        whole = f"the six trainings about {estimate * six() / 3600:.0f} h" if six else "the six longer still"
        log.warning("%s: at this CPU's %.2f images/s its %d epochs take about %.1f h and %s (counted by"
                    " FLOPs per step): the paper profile is a GPU job (README: Full reproduction on one GPU,"
                    " in one piece or several); `skunet smoke --workdir DIR` runs the whole pipeline at"
                    " smoke size in minutes", name, images / seconds, epochs, estimate / 3600, whole)
    return estimate


def deadline_from_env() -> float | None:
    """The deadline a time-boxed machine gives its trainings: SKUNET_DEADLINE, seconds since the
    epoch (`date -d '+50 min' +%s`); None when unset."""
    value = os.environ.get(DEADLINE_ENV, "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise SkunetError(f"{DEADLINE_ENV}={value!r}: not a time; give seconds since the epoch, e.g."
                          f" {DEADLINE_ENV}=$(date -d '+50 min' +%s), or unset it") from None


def train(
    mcfg: ModelConfig,
    cfg: TrainConfig,
    dataset: str,
    data_dir: Path,
    checkpoint: Path,
    log_csv: Path,
    state_path: Path,
    device: torch.device | None = None,
    stop_after_epoch: int | None = None,
    fast: bool | None = None,
    deadline: float | None = None,
    six_trainings: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Train one model; write the best checkpoint and the per-epoch log. Returns a summary.

    `state_path` holds the resume state between epochs; it is removed once training completes.
    `stop_after_epoch` ends the run early as a crash would (used to test resume).
    `deadline` (seconds since the epoch, as `time.time()`) stops the training at the end of the
    last epoch after which the next one, as long as the longest so far, would not end in time:
    it raises OutOfTime with the resume state saved, and the same call goes on from there.
    `six_trainings` (:func:`six_trainings_factor`) lets a long CPU training's first estimate say
    how long the six paper trainings take at the rate it measured.
    `fast` overrides the path (default: the fast path on CUDA when `cfg.fast_path`); forcing it
    on the CPU runs the fast path's code there, which is how the tests cover it without a GPU.
    """
    device = device or pick_device()
    ddp = init_distributed(device)
    if fast is None:
        fast = cfg.fast_path and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = load_training_data(data_dir, cfg)
    if ddp.main:
        log.info("training %s on %s: %d samples, %d epochs, %s%s", mcfg.name, dataset,
                 len(data.train_idx), cfg.epochs, device_name(device), " (fast path)" if fast else "")

    torch.manual_seed(cfg.seed)
    model = build_model(mcfg).to(device)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    # the fast path's Adam is the fused kernel: one launch per step for the whole update
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=fast)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.factor, patience=cfg.patience, min_lr=cfg.min_lr
    )
    fingerprint = _fingerprint(mcfg, cfg, data, ddp.world)
    start_epoch, best, history = 1, {"val_loss": float("inf"), "epoch": 0, "state": None}, []
    state = read_resume_state(state_path)
    if state is not None:
        if state["fingerprint"] == fingerprint:
            try:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
            except (RuntimeError, KeyError, TypeError, ValueError) as err:
                raise SkunetError(f"{state_path}: a resume state that does not fit the model "
                                  f"({reason(err)}); {_start_over(state_path)}") from None
            best, history = state["best"], state["history"]
            start_epoch = state["epoch"] + 1
            if ddp.main:
                log.info("resuming %s on %s after epoch %d", mcfg.name, dataset, state["epoch"])
        elif ddp.main:
            log.info("ignoring stale resume state %s (params or data changed)", state_path)

    net: torch.nn.Module = model
    if ddp.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if fast and cfg.compile:
        net = torch.compile(net)
    source = BatchSource(data, device, on_device=fast, channels_last=fast)
    per_rank = -(-cfg.batch_size // ddp.world)

    longest = 0.0  # the longest epoch of this run, for the deadline
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        torch.manual_seed(epoch_seed(cfg.seed, epoch) + ddp.rank)
        rng = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch))
        net.train()
        total, seen = torch.zeros((), device=device), 0
        step_rows = []
        for step in batches(len(data.train_idx), cfg.batch_size, rng):
            rows = data.train_idx[step][ddp.rank * per_rank : (ddp.rank + 1) * per_rank]
            if len(rows) < 2:  # a short last batch may leave a rank with too few rows
                rows = data.train_idx[step][:2]
            step_rows.append(rows)
        # closed (its line cleared) however the epoch ends, so a stop message starts its own line
        with tqdm(zip(step_rows, source.batches(step_rows)), total=len(step_rows),
                  desc=f"{dataset}/{mcfg.name} epoch {epoch}/{cfg.epochs}", disable=not ddp.main,
                  leave=False) as bar:
            for step, (rows, (x, y)) in enumerate(bar):
                loss = forward_loss(net, x, y, fast)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(rows)  # no host sync per step
                seen += len(rows)
                if step == ESTIMATE_AFTER_STEPS and epoch == start_epoch and device.type == "cpu" and ddp.main:
                    warn_if_long(time.perf_counter() - t0, seen, len(data.train_idx), cfg.epochs - epoch + 1,
                                 f"{dataset}/{mcfg.name}", six_trainings)
        # validation loss, F1 and whether to stop for the deadline, decided once for all ranks
        val = torch.zeros(3, dtype=torch.float64, device=device)  # NCCL broadcasts device tensors only
        if ddp.main:
            val[:2] = torch.tensor(validate(model, source, data.val_idx, cfg.batch_size, fast))
            # epochs of this run only: a resumed history may come from another machine
            longest = max(time.perf_counter() - t0, longest)
            val[2] = float(deadline is not None and epoch < cfg.epochs and time.time() + longest > deadline)
        if ddp.world > 1:
            dist.broadcast(val, 0)
        val_loss, val_f1, out_of_time = float(val[0]), float(val[1]), bool(val[2])
        scheduler.step(val_loss)
        row = {
            "epoch": epoch,
            "train_loss": total.item() / max(seen, 1),
            "val_loss": val_loss,
            "val_f1": val_f1,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
            "peak_mib": peak_memory_mib(device),
        }
        history.append(row)
        if val_loss < best["val_loss"]:
            # kept on the host in the default layout, so the checkpoint loads anywhere, GPU or not
            best = {"val_loss": val_loss, "epoch": epoch, "state": {
                k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
                for k, v in model.state_dict().items()}}
        if ddp.main:
            log.info("%s/%s epoch %d: train %.4f val %.4f F1 %.4f lr %.2g (%.1fs)", dataset,
                     mcfg.name, epoch, row["train_loss"], val_loss, val_f1, row["lr"], row["seconds"])
            state = {"fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "best": best, "history": history}
            save_atomic(state, state_path)
        if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < cfg.epochs:
            return {"stopped_after": epoch}
        if out_of_time:
            raise OutOfTime(f"{dataset}/{mcfg.name} stopped after epoch {epoch} of {cfg.epochs}, its"
                            f" state saved: the next epoch (up to {longest:.0f} s) would end after the deadline")

    summary = {"best_epoch": best["epoch"], "best_val_loss": best["val_loss"], "epochs": cfg.epochs,
               "model": model}
    if ddp.main:
        payload = {
            "model": mcfg.name,
            "model_config": asdict(mcfg),
            "train_config": asdict(cfg),
            "dataset": dataset,
            "seed": cfg.seed,
            "epoch": best["epoch"],
            "best_val_loss": best["val_loss"],
            "data_md5": dvc_data_md5(dataset),
            "data_fingerprint": data.fingerprint,
            "augmented_with": data.libraries,
            "torch_version": str(torch.__version__),
            "device": device_name(device),
            "world_size": ddp.world,
            "state_dict": best["state"],
        }
        save_atomic(payload, checkpoint)
        with atomic_file(log_csv) as tmp, tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
            writer.writeheader()
            writer.writerows(history)
        state_path.unlink(missing_ok=True)
    if ddp.world > 1:
        dist.barrier()
    return summary


CHECKPOINT_KEYS = ("model_config", "state_dict", "epoch", "best_val_loss")
STATE_KEYS = ("fingerprint", "epoch", "model", "optimizer", "scheduler", "best", "history")


def _train_stage(checkpoint: Path) -> str:
    """The stage that writes `checkpoint`, as `dvc repro` names it."""
    dataset, model = checkpoint.parent.name, checkpoint.stem
    if dataset in DATASETS and model in MODELS:
        return f"train@{dataset}-{model}"
    return "train@<dataset>-<model>"


def _torch_load(path: Path, what: str, remedy: str) -> Any:
    """`torch.load` of tensors and plain data only (weights_only=True); a file holding anything
    else, or a damaged one, is one line naming it and `remedy`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refused what the file holds (Python objects, code to run on loading) or
        # could not read it as a pickle; PyTorch's message suggests loading it unchecked, which
        # must never be done with a file of unknown origin
        raise SkunetError(f"{path}: not a {what} this project wrote (not tensors and plain data "
                          f"only), so it was not loaded; {remedy}") from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:  # a truncated zip: OSError EINVAL
        raise SkunetError(f"{path}: truncated or damaged {what} ({reason(err)}); {remedy}") from None


def _misfit(model: torch.nn.Module, weights: Any) -> str | None:
    """What keeps `weights` from loading into `model` (missing, unexpected or reshaped
    entries), or None when they fit."""
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        return "its state_dict is not a mapping of tensors"
    expected = model.state_dict()
    missing = sorted(expected.keys() - weights.keys())
    unexpected = sorted(weights.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & weights.keys() if expected[k].shape != weights[k].shape)
    if not (missing or unexpected or reshaped):
        return None
    first = (missing or unexpected or reshaped)[0]
    return (f"its weights do not fit the model its model_config describes ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(reshaped)} of another shape, e.g. {first!r})")


def _start_over(state_path: Path) -> str:
    return f"delete {state_path} and run the train stage again to start the training over"


def read_resume_state(path: Path) -> dict | None:
    """The resume state at `path` (None when there is none), read on the host: load_state_dict
    copies onto the model's device, and the best weights in it stay host tensors, as the final
    checkpoint keeps them. A damaged one is one line saying to delete it."""
    if not path.exists():
        return None
    state = _torch_load(path, "resume state", _start_over(path))
    absent = [key for key in STATE_KEYS if key not in state] if isinstance(state, dict) else ["fingerprint"]
    if absent:
        raise SkunetError(f"{path}: not a complete resume state (no {absent[0]!r}); {_start_over(path)}")
    return state


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model a checkpoint was trained as and load its weights.

    The one reader of checkpoints (evaluate, the training summaries, the run context), so each
    gets the same checks: a file of tensors and plain data only (weights_only), the keys the
    train stage writes, a model_config of one of our models, weights that fit that model.
    The model is returned as built (training mode): the test-time mode is set in one place,
    where predictions are made (:func:`skunet.evaluation.predict`), so a bug there is not
    hidden by a second `eval()` here.
    """
    stage = _train_stage(path)
    remedy = f"re-run `dvc repro -f {stage}`"
    if not path.is_file():
        raise missing_output(path, stage)
    payload = _torch_load(path, "checkpoint", remedy)
    absent = [key for key in CHECKPOINT_KEYS if key not in payload] if isinstance(payload, dict) else ["model_config"]
    if absent:
        raise SkunetError(f"{path}: not a checkpoint of the train stage (no {absent[0]!r}); {remedy}")
    try:
        model = build_model(ModelConfig(**payload["model_config"]))
    except (TypeError, ValueError) as err:
        raise SkunetError(f"{path}: its model_config describes no model of this project "
                          f"({reason(err)}); {remedy}") from None
    misfit = _misfit(model, payload["state_dict"])
    if misfit:
        raise SkunetError(f"{path}: {misfit}; {remedy}")
    model.load_state_dict(payload["state_dict"])
    return model.to(device), payload


def peak_memory_mib(device: torch.device) -> float:
    """Peak memory of this process so far, MiB: on CUDA the most the caching allocator held for
    tensors, elsewhere the peak resident set."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10, 1)  # KiB on Linux


def read_log(path: Path) -> list[dict[str, float]]:
    """The rows of a per-epoch training log (`LOG_FIELDS`), as numbers."""
    with path.open(newline="") as fh:
        try:
            return [{key: float(row[key]) for key in LOG_FIELDS if key in row or key not in OPTIONAL_LOG_FIELDS}
                    for row in csv.DictReader(fh)]
        except (KeyError, TypeError, ValueError):
            raise SkunetError(f"{path}: not a training log with columns {', '.join(LOG_FIELDS)}; "
                              "re-run its train stage") from None


def training_summaries(models_dir: Path, logs_dir: Path) -> list[dict[str, Any]]:
    """One row per trained model (datasets, then models, in the paper's order): epochs run, the
    checkpointed (lowest validation loss) epoch with its validation loss and F1, the device, and
    `seconds`, the epochs' times summed from the log (loading the data and building the model are
    not counted). `log` holds the log's rows; without a log, it is empty and `seconds` and
    `best_val_f1` are None."""
    rows = []
    for dataset in DATASETS:
        for model in MODELS:
            checkpoint = models_dir / dataset / f"{model}.pt"
            if not checkpoint.is_file():
                continue
            _, payload = load_checkpoint(checkpoint)
            log_csv = logs_dir / dataset / f"{model}.csv"
            epochs = read_log(log_csv) if log_csv.is_file() else []
            best = next((r for r in epochs if int(r["epoch"]) == payload["epoch"]), {})
            rows.append({
                "dataset": dataset,
                "model": model,
                "epochs": len(epochs),
                "best_epoch": payload["epoch"],
                "best_val_loss": payload["best_val_loss"],
                "best_val_f1": best.get("val_f1"),
                "seconds": sum(r["seconds"] for r in epochs) if epochs else None,
                "device": str(payload.get("device", "unknown")),
                "log": epochs,
            })
    return rows


def run_context(profile: str, models_dir: Path) -> dict[str, str]:
    """Where a set of results comes from: profile, devices, torch versions and the libraries that
    drew the augmentations, as the checkpoints record them."""
    devices, versions, libraries = set(), set(), set()
    for path in sorted(models_dir.glob("*/*.pt")):
        _, payload = load_checkpoint(path)
        devices.add(str(payload.get("device", "unknown")))
        versions.add(str(payload.get("torch_version", "unknown")))
        if payload.get("augmented_with"):
            libraries.add(", ".join(f"{k} {v}" for k, v in sorted(payload["augmented_with"].items())))
    context = {
        "run": f"dvc repro, {profile} profile",
        "profile": profile,
        "device": ", ".join(sorted(devices)) or "unknown",
        "torch": ", ".join(sorted(versions)) or "unknown",
    }
    if libraries:
        context["augmented_with"] = "; ".join(sorted(libraries))
    return context
