"""What a lease sends and brings back at paper size, counted: does it fit the limits?

    python benchmarks/lease_sizes.py [--wheelhouse DIR] [--archives DIR] [--out benchmarks/results/lease_sizes.json]

Back (at most 8 files of 16 MiB): the six trainings' checkpoints as the train stage writes them
(paper params.yaml, each model's own weights), with a 50-epoch log each, plus the resume state of
the largest training in progress (weights, Adam's two moments, the best weights so far, 49
epochs of history), packed by `skunet.lease._pack` itself, as a lease packs them.
There (at most 64 MiB): the project's tracked files, the two archives and a wheelhouse
(scripts/wheelhouse.sh) for what the GPU machine lacks.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from skunet import lease
from skunet.checkpoints import LOG_FIELDS, save_atomic
from skunet.config import DATASETS, MODELS, load_params, model_config
from skunet.training import train_config

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20


def _model_and_adam(params: dict, dataset: str, model: str):
    mcfg = model_config(params, dataset, model)
    from skunet.models import build_model

    net = build_model(mcfg)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.rand(2, 3, 64, 64)).mean().backward()  # one step fills Adam's moments
    optimizer.step()
    return mcfg, net, optimizer


def write_trainings(params: dict, root: Path) -> dict[str, float]:
    """Each training's finished outputs in a fake DVC cache (as the run cache holds them) and
    each one's resume state; returns the resume states' sizes in MiB."""
    states = {}
    epochs = params["train"]["common"]["epochs"]
    for i, (dataset, model) in enumerate((d, m) for d in DATASETS for m in MODELS):
        mcfg, net, optimizer = _model_and_adam(params, dataset, model)
        payload = {"model": model, "model_config": mcfg.model_dump(), "train_config": asdict(train_config(params, dataset, model)),
                   "dataset": dataset, "seed": 42, "epoch": epochs, "best_val_loss": 0.1, "state_dict": net.state_dict()}
        history = [dict.fromkeys(LOG_FIELDS, 0.123456789) for _ in range(epochs)]
        # the outputs as DVC's cache holds them (by md5), and the run-cache entry naming them
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(history)
        outs = []
        for path, data in ((f"models/{dataset}/{model}.pt", buffer.getvalue()),
                           (f"plots/train/{dataset}/{model}.csv", text.getvalue().encode())):
            md5 = hashlib.md5(data).hexdigest()
            obj = root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
            obj.parent.mkdir(parents=True, exist_ok=True)
            obj.write_bytes(data)
            outs.append({"path": path, "md5": md5})
        entry = root / ".dvc" / "cache" / "runs" / f"{i:02d}" / f"{i:02d}key" / "value"
        entry.parent.mkdir(parents=True)
        entry.write_text(json.dumps({"cmd": f"{lease.TRAIN_CMD} {dataset} {model}", "outs": outs}))
        state = {"fingerprint": "0" * 16, "epoch": epochs - 1, "model": net.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": {}, "history": history[:-1],
                 "best": {"val_loss": 0.1, "epoch": epochs - 1,  # a copy, as training keeps it
                          "state": {k: v.clone() for k, v in net.state_dict().items()}}}
        state_path = root / ".skunet-state" / f"{dataset}-{model}.pt"
        state_path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic(state, state_path)
        states[f"{dataset}-{model}"] = state_path.stat().st_size / MIB
    return states


def tree_mib(wheelhouse: Path | None, archives: Path | None) -> dict[str, float]:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    sizes = {"project": sum((ROOT / f).stat().st_size for f in tracked.stdout.split("\0") if f and (ROOT / f).is_file()) / MIB}
    if archives:
        sizes["archives"] = sum(p.stat().st_size for p in archives.glob("*.zip")) / MIB
    if wheelhouse:
        sizes["wheelhouse"] = sum(p.stat().st_size for p in wheelhouse.glob("*.whl")) / MIB
    sizes["total"] = sum(sizes.values())
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheelhouse", type=Path, help="the folder scripts/wheelhouse.sh wrote")
    parser.add_argument("--archives", type=Path, help="the folder holding DRIVE.zip and CHASEDB1.zip")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lease_sizes.json")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        states = write_trainings(params, root)
        largest = max(states, key=states.get)
        out = root / "out"
        out.mkdir()
        parts = lease._pack(root, out, list(lease.ORDER), largest)
        packed = sum((out / p).stat().st_size for p in parts) / MIB
    report = {"checkpoints_and_logs_and_state_mib": packed, "parts": len(parts), "max_parts": lease.MAX_PARTS,
              "largest_resume_state": largest, "resume_state_mib": states,
              "tree_mib": tree_mib(args.wheelhouse, args.archives)}
    print(json.dumps(report, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
