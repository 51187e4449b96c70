"""The training set as the loop sees it: the augment stage's arrays, the train / validation
split, and each epoch's batches, cut on the host or (fast path) on the device."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from skunet.atomic import damaged_output, read_array, read_json
from skunet.errors import SkunetError


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


def load_training_data(data_dir: Path, validation_fraction: float, split_mode: str,
                       max_train_samples: int = 0) -> TrainingData:
    """Open the augment stage's arrays in `data_dir` and split them; `max_train_samples` (0: all)
    keeps that many evenly spaced training rows and a quarter as many validation rows."""
    stage = f"augment@{data_dir.name}"
    images = read_array(data_dir / "images.npy", stage, mmap_mode="r", shape=("N", "S", "S", 3))
    labels = read_array(data_dir / "labels.npy", stage, mmap_mode="r", shape=(len(images), *images.shape[1:3]))
    records = read_json(data_dir / "records.json", stage, kind=list)
    try:
        sources = np.array([r["source"] for r in records])
    except (KeyError, TypeError):
        raise damaged_output(data_dir / "records.json", "not a list of rows with a 'source'", stage) from None
    records_text = (data_dir / "records.json").read_text()  # the fingerprint hashes the file as written
    train_idx, val_idx = split_indices(sources, validation_fraction, split_mode)
    if max_train_samples:
        # evenly spaced rows keep every transform and source represented in a small subset
        pick = np.linspace(0, len(train_idx) - 1, min(max_train_samples, len(train_idx)))
        train_idx = train_idx[np.unique(pick.round().astype(int))]
        val_idx = val_idx[:: max(1, len(val_idx) // max(1, max_train_samples // 4))]
    fingerprint = hashlib.sha256(
        f"{images.shape}{labels.shape}{records_text}".encode()
        + np.asarray(images[:: max(1, len(images) // 8)]).tobytes()[:1 << 20]
    ).hexdigest()[:16]
    # data augmented before libraries.json existed has none: the checkpoint then records none
    libraries_json = data_dir / "libraries.json"
    libraries = read_json(libraries_json, stage) if libraries_json.exists() else {}
    return TrainingData(images, labels, train_idx, val_idx, fingerprint, libraries)


def epoch_batches(n_rows: int, batch_size: int, epoch_rng: torch.Generator) -> list[np.ndarray]:
    """One epoch's shuffled batches of positions in 0..n_rows-1. A last batch of one row joins the
    one before: BatchNorm (in the SK attention above all) cannot train on a single sample."""
    perm = torch.randperm(n_rows, generator=epoch_rng).numpy()
    chunks = [perm[start : start + batch_size] for start in range(0, n_rows, batch_size)]
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [np.concatenate(chunks[-2:])]
    return chunks


def rank_rows(rows: np.ndarray, batch_size: int, rank: int, world: int) -> np.ndarray:
    """This rank's share of one batch's rows under torchrun (all of them alone); a share of fewer
    than two rows (a short last batch) takes the batch's first two, for BatchNorm."""
    per_rank = -(-batch_size // world)
    share = rows[rank * per_rank : (rank + 1) * per_rank]
    return share if len(share) >= 2 else rows[:2]


def in_order(rows: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """`rows` cut into consecutive batches, unshuffled (validation)."""
    return [rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]


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
