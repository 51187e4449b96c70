"""What a training leaves behind, written and read in one place: checkpoints (the best weights
with the config that shapes them), resume states between epochs, per-epoch logs, and the
summaries and provenance the report takes from them.

Files are read with `torch.load(weights_only=True)`: tensors and plain data only, never code.
"""

from __future__ import annotations

import csv
import io
import pickle
import struct
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from ruamel.yaml.error import YAMLError

from skunet.atomic import atomic_file, missing_output
from skunet.config import DATASETS, MODELS, PAPER_EPOCHS, ModelConfig, describe, parse_yaml
from skunet.errors import SkunetError, reason
from skunet.models import build_model

LOG_FIELDS = ("epoch", "train_loss", "val_loss", "val_f1", "lr", "seconds", "peak_mib")
# logs written before peak memory was recorded lack it
OPTIONAL_LOG_FIELDS = ("peak_mib",)


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


def save_checkpoint(path: Path, *, config: ModelConfig, train_config: Any, dataset: str, best: dict,
                    data: Any, device: str, world_size: int) -> None:
    """The train stage's output: the best epoch's weights (`best`: epoch, val_loss, state) with
    everything needed to rebuild the network and to say where it came from."""
    save_atomic({
        "model": config.name,
        "model_config": config.model_dump(),
        "train_config": asdict(train_config),
        "dataset": dataset,
        "seed": train_config.seed,
        "epoch": best["epoch"],
        "best_val_loss": best["val_loss"],
        "data_md5": dvc_data_md5(dataset),
        "data_fingerprint": data.fingerprint,
        "input_size": int(data.images.shape[1]),  # the square side the network was trained at
        "augmented_with": data.libraries,
        "torch_version": str(torch.__version__),
        "device": device,
        "world_size": world_size,
        "state_dict": best["state"],
    }, path)


def write_log(path: Path, history: list[dict[str, float]]) -> None:
    """The per-epoch training log (`LOG_FIELDS`), a CSV that `dvc plots` draws."""
    with atomic_file(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(history)


def dvc_data_md5(dataset: str, lock: Path = Path("dvc.lock")) -> str | None:
    """md5 of data/augmented/<dataset> as dvc.lock records it, when the stage has been locked."""
    try:
        stages = parse_yaml(lock.read_text())["stages"]
        for out in stages[f"augment@{dataset}"]["outs"]:
            if out["path"] == f"data/augmented/{dataset}":
                return out["md5"]
    except (OSError, KeyError, TypeError, YAMLError):
        pass
    return None


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
        if zipfile.is_zipfile(path):  # torch.save's format; torch.load checks no CRC
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip()
            if damaged:
                raise SkunetError(f"{path}: damaged {what} ({damaged} fails its CRC check); {remedy}")
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refused what the file holds (Python objects, code to run on loading) or
        # could not read it as a pickle; PyTorch's message suggests loading it unchecked, which
        # must never be done with a file of unknown origin
        raise SkunetError(f"{path}: not a {what} this project wrote (not tensors and plain data "
                          f"only), so it was not loaded; {remedy}") from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, TypeError, struct.error,
            zipfile.BadZipFile) as err:
        # a truncated zip: OSError EINVAL; a file that is no pickle at all: KeyError from the
        # unpickler, or struct.error where it is shorter than the legacy format's first number
        raise SkunetError(f"{path}: truncated or damaged {what} ({type(err).__name__}: {reason(err)}); {remedy}") from None


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
    remedy = f"re-run `dvc repro -f -s {stage}`"
    if path.is_dir():
        raise SkunetError(f"{path}: a folder, not a checkpoint; give the .pt file the train stage wrote"
                          " (models/<dataset>/<model>.pt)")
    if not path.is_file():
        raise missing_output(path, stage)
    payload = _torch_load(path, "checkpoint", remedy)
    absent = [key for key in CHECKPOINT_KEYS if key not in payload] if isinstance(payload, dict) else ["model_config"]
    if absent:
        raise SkunetError(f"{path}: not a checkpoint of the train stage (no {absent[0]!r}); {remedy}")
    try:
        model = build_model(ModelConfig.model_validate(payload["model_config"]))
    except ValidationError as err:
        raise SkunetError(f"{path}: its model_config describes no model of this project "
                          f"({describe(err, ModelConfig)}); {remedy}") from None
    named, made = (path.parent.name, path.stem), (payload.get("dataset", path.parent.name), payload.get("model", path.stem))
    if stage != "train@<dataset>-<model>" and made != named:  # models/<dataset>/<model>.pt holds another
        raise SkunetError(f"{path}: a checkpoint of {'/'.join(map(str, made))}, not of {'/'.join(named)} (copied or"
                          f" moved here?); {remedy}")
    misfit = _misfit(model, payload["state_dict"])
    if misfit:
        raise SkunetError(f"{path}: {misfit}; {remedy}")
    diverged = next((k for k, v in payload["state_dict"].items() if v.is_floating_point() and not v.isfinite().all()), None)
    if diverged:
        raise SkunetError(f"{path}: its weights hold NaN or infinity ({diverged}): the training diverged or the"
                          f" file was damaged; {remedy}")
    model.load_state_dict(payload["state_dict"])
    return model.to(device), payload


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
    devices, versions, libraries, short = set(), set(), set(), set()
    for path in sorted(models_dir.glob("*/*.pt")):
        _, payload = load_checkpoint(path)
        devices.add(str(payload.get("device", "unknown")))
        versions.add(str(payload.get("torch_version", "unknown")))
        if payload.get("augmented_with"):
            libraries.add(", ".join(f"{k} {v}" for k, v in sorted(payload["augmented_with"].items())))
        if less := _short_of_the_paper(payload.get("train_config") or {}):
            short.add(", ".join(less))
    context = {
        "run": f"dvc repro, {profile} profile",
        "profile": profile,
        "device": ", ".join(sorted(devices)) or "unknown",
        "torch": ", ".join(sorted(versions)) or "unknown",
    }
    if libraries:
        context["augmented_with"] = "; ".join(sorted(libraries))
    if short:
        context["short_of_paper"] = "; ".join(sorted(short))
    return context


def _short_of_the_paper(train_config: dict[str, Any]) -> list[str]:
    """How a training, as its checkpoint records it, falls short of the paper's: fewer epochs, or a
    subset of the samples (the smoke and tiny profiles do both)."""
    short = []
    if train_config.get("epochs", PAPER_EPOCHS) < PAPER_EPOCHS:
        short.append(f"{train_config['epochs']} epoch{'' if train_config['epochs'] == 1 else 's'}")
    if train_config.get("max_train_samples"):
        short.append(f"{train_config['max_train_samples']} training samples")
    return short
