"""Training: Adam + BCE + ReduceLROnPlateau, best checkpoint by validation loss, resumable.

The loop is a few named steps, each short: :func:`start` (data, network, optimizer),
:func:`resume` (from the last completed epoch), :func:`train_epoch`, :func:`validate`,
:func:`end_epoch` (scheduler, history, best weights, resume state) and :func:`finish` (checkpoint
and log). What they share lives in one :class:`Run`.

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

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from skunet.checkpoints import read_resume_state, save_atomic, save_checkpoint, write_log
from skunet.config import ModelConfig, parse_yaml
from skunet.data.batches import BatchSource, TrainingData, epoch_batches, in_order, load_training_data, rank_rows
from skunet.devices import Dist, device_name, init_distributed, peak_memory_mib, pick_device
from skunet.errors import OutOfTime, SkunetError, reason
from skunet.estimates import ESTIMATE_AFTER_STEPS, warn_if_long
from skunet.metrics import scores_from_counts
from skunet.models import build_model

log = logging.getLogger(__name__)


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


def train_config(params: Mapping[str, Any], dataset: str, model: str) -> TrainConfig:
    """How `model` is trained on `dataset`, from validated params."""
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


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**31)


# ------------------------------------------------------------------------------------ the run
@dataclass
class Run:
    """One training between its steps: what it trains, on what, and how far it has come."""

    config: ModelConfig
    cfg: TrainConfig
    dataset: str
    device: torch.device
    ddp: Dist
    fast: bool
    data: TrainingData
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    params: str  # :func:`params_fingerprint`, and
    code: str  # :func:`code_fingerprint`: kept in the resume state for `skunet take` to read
    fingerprint: str  # :func:`_fingerprint`, what a resume state must match
    start_epoch: int = 1
    best: dict[str, Any] = field(default_factory=lambda: {"val_loss": float("inf"), "epoch": 0, "state": None})
    history: list[dict[str, float]] = field(default_factory=list)
    longest: float = 0.0  # the longest epoch of this run, for the deadline

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.config.name}"


def params_fingerprint(config: ModelConfig, cfg: TrainConfig) -> str:
    """The parameters part of a resume state's fingerprint, kept beside it for `skunet take`."""
    blob = json.dumps([config.model_dump(mode="json"), asdict(cfg)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _fingerprint(params: str, data: TrainingData, world: int, code: str) -> str:
    """What a resume state must match to be resumed: parameters, data, DDP world size and code."""
    blob = json.dumps([params, data.fingerprint, world, code])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def code_fingerprint(root: Path, paths: Iterable[str]) -> str:
    """The bytes of the code at `paths` under `root` (files, and the files in folders but Python's
    bytecode), as a training's resume state records them: a state that other code saved is not
    resumed, so that a finished training comes from the code its stage records, not from a mix
    (the train stage passes the code dvc.yaml lists for it)."""
    digest = hashlib.sha256()
    for rel in sorted(paths):
        path = root / rel
        files = [path] if not path.is_dir() else sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix != ".pyc"
            and "__pycache__" not in p.relative_to(path).parts)
        for file in files:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest() if file.is_file() else b"(none)")
    return digest.hexdigest()[:16]


def stage_code(root: Path) -> str:
    """:func:`code_fingerprint` of the code dvc.yaml at `root` lists for the train stage (its
    dependencies but the data): what the stage passes as `code`."""
    deps = parse_yaml((root / "dvc.yaml").read_text())["stages"]["train"]["deps"]
    return code_fingerprint(root, [dep for dep in deps if not dep.startswith("data/")])


def start(config: ModelConfig, cfg: TrainConfig, dataset: str, data_dir: Path, device: torch.device,
          fast: bool | None, code: str = "") -> Run:
    """The training's start: the data, the network (seeded), Adam and the scheduler. `code`
    (:func:`code_fingerprint`) goes into the fingerprint that a resume state must match."""
    ddp = init_distributed(device)
    if fast is None:
        fast = cfg.fast_path and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = load_training_data(data_dir, cfg.validation_fraction, cfg.split_mode, cfg.max_train_samples)
    if ddp.main:
        log.info("training %s on %s: %d samples, %d epochs, %s%s", config.name, dataset,
                 len(data.train_idx), cfg.epochs, device_name(device), " (fast path)" if fast else "")
    torch.manual_seed(cfg.seed)
    model = build_model(config).to(device)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    # the fast path's Adam is the fused kernel: one launch per step for the whole update
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=fast)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.factor, patience=cfg.patience, min_lr=cfg.min_lr
    )
    params = params_fingerprint(config, cfg)
    return Run(config, cfg, dataset, device, ddp, fast, data, model, optimizer, scheduler, params, code,
               _fingerprint(params, data, ddp.world, code))


def resume(run: Run, state_path: Path) -> None:
    """Go on after the last completed epoch, when `state_path` holds a state of this very
    training (same params, data and code); a stale one is left to be overwritten."""
    state = read_resume_state(state_path)
    if state is None:
        return
    if state["fingerprint"] != run.fingerprint:
        if run.ddp.main:
            log.info("ignoring stale resume state %s (params, data or code changed): starting over", state_path)
        return
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise SkunetError(f"{state_path}: a resume state that does not fit the model ({reason(err)});"
                          f" delete {state_path} and run the train stage again to start the training over") from None
    run.best, run.history, run.start_epoch = state["best"], state["history"], state["epoch"] + 1
    if run.ddp.main:
        log.info("resuming %s on %s after epoch %d", run.config.name, run.dataset, state["epoch"])


def train_epoch(run: Run, net: torch.nn.Module, source: BatchSource, epoch: int,
                six_trainings: Callable[[], float] | None, deadline: float | None = None) -> float:
    """One pass over the shuffled training rows; returns the mean training loss. Past `deadline`
    no step starts: the epoch is dropped (OutOfTime) and the last completed one's resume state is
    what remains, since a time-boxed machine is cut off at its limit and nothing after it would be
    packed. A single process only: DDP's ranks would each read their own clock, and one stopping
    alone would leave the others waiting in their all-reduce, so they stop at epoch boundaries."""
    torch.manual_seed(epoch_seed(run.cfg.seed, epoch) + run.ddp.rank)
    rng = torch.Generator().manual_seed(epoch_seed(run.cfg.seed, epoch))
    net.train()
    t0 = time.perf_counter()
    total, seen = torch.zeros((), device=run.device), 0
    step_rows = [rank_rows(run.data.train_idx[step], run.cfg.batch_size, run.ddp.rank, run.ddp.world)
                 for step in epoch_batches(len(run.data.train_idx), run.cfg.batch_size, rng)]
    # closed (its line cleared) however the epoch ends, so a stop message starts its own line
    with tqdm(zip(step_rows, source.batches(step_rows)), total=len(step_rows),
              desc=f"{run.name} epoch {epoch}/{run.cfg.epochs}", disable=not run.ddp.main, leave=False) as bar:
        for step, (rows, (x, y)) in enumerate(bar):
            if deadline is not None and run.ddp.world == 1 and time.time() > deadline:
                kept = (f"its state after epoch {epoch - 1} kept" if epoch > 1
                        else "before its first epoch ended: nothing kept")
                raise OutOfTime(f"{run.name} stopped during epoch {epoch} of {run.cfg.epochs} at the deadline"
                                f" (step {step + 1} of {len(step_rows)}), {kept}")
            loss = forward_loss(net, x, y, run.fast)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            total += loss.detach() * len(rows)  # no host sync per step
            seen += len(rows)
            if (step == ESTIMATE_AFTER_STEPS and epoch == run.start_epoch and run.device.type == "cpu"
                    and run.ddp.main):
                warn_if_long(time.perf_counter() - t0, seen, len(run.data.train_idx),
                             run.cfg.epochs - epoch + 1, run.name, six_trainings)
    return total.item() / max(seen, 1)


@torch.no_grad()
def validate(model: torch.nn.Module, source: BatchSource, rows: np.ndarray, batch_size: int,
             fast: bool) -> tuple[float, float]:
    """Mean BCE and pixel F1 (probability > 0.5) over the validation rows."""
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=source.device)  # loss, tp, fp, fn
    count = 0
    for x, y in source.batches(in_order(rows, batch_size)):
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
    counts = {"tp": tp, "fp": fp, "fn": fn, "tn": count - tp - fp - fn}
    return loss / max(count, 1), scores_from_counts(counts)["f1"]


def end_epoch(run: Run, source: BatchSource, epoch: int, started: float,
              deadline: float | None) -> tuple[float, float, bool]:
    """Validate (on rank 0, shared with all ranks) and step the scheduler; returns the validation
    loss and F1, and whether the next epoch (as long as this run's longest, validation included,
    timed from `started`) would end after `deadline`."""
    # validation loss, F1 and whether to stop for the deadline, decided once for all ranks
    val = torch.zeros(3, dtype=torch.float64, device=run.device)  # NCCL broadcasts device tensors only
    if run.ddp.main:
        val[:2] = torch.tensor(validate(run.model, source, run.data.val_idx, run.cfg.batch_size, run.fast))
        # epochs of this run only: a resumed history may come from another machine
        run.longest = max(time.perf_counter() - started, run.longest)
        val[2] = float(deadline is not None and epoch < run.cfg.epochs and time.time() + run.longest > deadline)
    if run.ddp.world > 1:
        dist.broadcast(val, 0)
    val_loss, val_f1, out_of_time = float(val[0]), float(val[1]), bool(val[2])
    run.scheduler.step(val_loss)
    return val_loss, val_f1, out_of_time


def record_epoch(run: Run, epoch: int, row: dict[str, float], state_path: Path) -> None:
    """Append the epoch's log row, keep the weights when they are the best so far, and save the
    resume state (rank 0)."""
    run.history.append(row)
    if row["val_loss"] < run.best["val_loss"]:
        # kept on the host in the default layout, so the checkpoint loads anywhere, GPU or not
        run.best = {"val_loss": row["val_loss"], "epoch": epoch, "state": {
            k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
            for k, v in run.model.state_dict().items()}}
    if run.ddp.main:
        log.info("%s epoch %d: train %.4f val %.4f F1 %.4f lr %.2g (%.1fs)", run.name, epoch,
                 row["train_loss"], row["val_loss"], row["val_f1"], row["lr"], row["seconds"])
        save_atomic({"fingerprint": run.fingerprint, "code": run.code, "params": run.params,
                     "epoch": epoch, "model": run.model.state_dict(),
                     "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                     "best": run.best, "history": run.history}, state_path)


def finish(run: Run, checkpoint: Path, log_csv: Path, state_path: Path) -> None:
    """Write the checkpoint of the best epoch and the log; the resume state is no longer needed."""
    if run.ddp.main:
        save_checkpoint(checkpoint, config=run.config, train_config=run.cfg, dataset=run.dataset,
                        best=run.best, data=run.data, device=device_name(run.device), world_size=run.ddp.world)
        write_log(log_csv, run.history)
        state_path.unlink(missing_ok=True)
    if run.ddp.world > 1:
        dist.barrier()


def train(
    config: ModelConfig,
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
    code: str = "",
) -> dict[str, Any]:
    """Train one model; write the best checkpoint and the per-epoch log. Returns a summary.

    `state_path` holds the resume state between epochs; it is removed once training completes.
    `stop_after_epoch` ends the run early as a crash would (used to test resume).
    `deadline` (seconds since the epoch, as `time.time()`) stops the training at the end of the
    last epoch after which the next one, as long as the longest so far, would not end in time,
    and, where an epoch runs past it all the same (its first, whose time nobody knew), before the
    next step: it raises OutOfTime with the last completed epoch's resume state saved, and the
    same call goes on from there.
    `six_trainings` (:func:`skunet.estimates.six_trainings_factor`) lets a long CPU training's
    first estimate say how long the six paper trainings take at the rate it measured.
    `fast` overrides the path (default: the fast path on CUDA when `cfg.fast_path`); forcing it
    on the CPU runs the fast path's code there, which is how the tests cover it without a GPU.
    `code` (:func:`code_fingerprint`): the code the training runs; a resume state of other code
    is not resumed.
    """
    run = start(config, cfg, dataset, data_dir, device or pick_device(), fast, code)
    resume(run, state_path)
    net: torch.nn.Module = run.model
    if run.ddp.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None
        )
    if run.fast and cfg.compile:
        net = torch.compile(net)
    source = BatchSource(run.data, run.device, on_device=run.fast, channels_last=run.fast)

    for epoch in range(run.start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        train_loss = train_epoch(run, net, source, epoch, six_trainings, deadline)
        val_loss, val_f1, out_of_time = end_epoch(run, source, epoch, t0, deadline)
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_f1": val_f1,
               "lr": run.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0,
               "peak_mib": peak_memory_mib(run.device)}
        record_epoch(run, epoch, row, state_path)
        if stop_after_epoch is not None and stop_after_epoch <= epoch < cfg.epochs:
            return {"stopped_after": epoch}
        if out_of_time:
            raise OutOfTime(f"{run.name} stopped after epoch {epoch} of {cfg.epochs}, its state saved:"
                            f" the next epoch (up to {run.longest:.0f} s) would end after the deadline")

    finish(run, checkpoint, log_csv, state_path)
    return {"best_epoch": run.best["epoch"], "best_val_loss": run.best["val_loss"], "epochs": cfg.epochs,
            "model": run.model}
