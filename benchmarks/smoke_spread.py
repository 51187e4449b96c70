"""Run-to-run spread of the smoke profile's metrics, from which baselines/smoke.yaml's tolerances come.

    python benchmarks/smoke_spread.py --seeds 42 43 44 --out benchmarks/results/smoke_spread.json \
        --write-baseline baselines/smoke.yaml

Runs the smoke pipeline (`skunet smoke`'s workspace, the same dvc.yaml) once per seed, each in its
own folder under --workdir, and writes every model's paper-protocol F1 / accuracy / AUC per seed,
with mean, standard deviation and range. On one machine a seed's run is deterministic, so the
spread over seeds stands for what a different CPU, BLAS or thread count can do to a run.

With --write-baseline, the baseline is the run with the default seed (the one CI repeats) and each
metric's tolerance is three standard deviations over the seeds, at least the floor below, rounded
up to 0.01: the gate then catches a broken model (F1 0 is far outside) without failing on noise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
from pathlib import Path

import yaml

from skunet.baseline import baseline_text, environment
from skunet.cli import lay_out_workspace, project_root
from skunet.config import DATASETS, MODELS

METRICS = ("f1", "accuracy", "auc")
FLOOR = {"f1": 0.03, "accuracy": 0.01, "auc": 0.02}


def run_seed(root: Path, workdir: Path, seed: int) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    lay_out_workspace(root, workdir)
    params_path = workdir / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["base"]["seed"] = seed
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    if not (workdir / ".git").exists():
        subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["dvc", "repro", "evaluate"], cwd=workdir, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return {
        ds: {m: json.loads((workdir / "metrics" / ds / f"{m}.json").read_text()) for m in MODELS}
        for ds in DATASETS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--workdir", type=Path, default=Path("../skunet-smoke-spread"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/smoke_spread.json"))
    parser.add_argument("--write-baseline", type=Path, default=None)
    args = parser.parse_args()

    root = project_root()
    runs = {seed: run_seed(root, (args.workdir / f"seed{seed}").resolve(), seed) for seed in args.seeds}
    summary = {}
    for ds in DATASETS:
        for m in MODELS:
            for metric in METRICS:
                values = [runs[s][ds][m]["paper"][metric] for s in args.seeds]
                summary[f"{ds}/{m}/{metric}"] = {
                    "values": values,
                    "mean": statistics.mean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "range": max(values) - min(values),
                }
                print(f"{ds:6s} {m:15s} {metric:9s} " + " ".join(f"{v:.4f}" for v in values)
                      + f"  std {summary[f'{ds}/{m}/{metric}']['std']:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seeds": args.seeds, "metrics": summary}, indent=2) + "\n")
    if args.write_baseline:
        write_baseline(args.write_baseline, runs, summary, args.seeds)


def write_baseline(path: Path, runs: dict, summary: dict, seeds: list[int]) -> None:
    default_seed = yaml.safe_load((project_root() / "params.yaml").read_text())["base"]["seed"]
    if default_seed not in runs:
        raise SystemExit(f"--seeds must include the default seed {default_seed} for the baseline")
    tolerances = {}
    for metric in METRICS:
        spread = max(summary[f"{ds}/{m}/{metric}"]["std"] for ds in DATASETS for m in MODELS)
        tolerances[metric] = math.ceil(max(3 * spread, FLOOR[metric]) * 100) / 100
    header = [
        "# Smoke-profile baseline: the metrics `skunet smoke` produces, and what",
        "# `skunet check --baseline baselines/smoke.yaml` holds a run to (see skunet/baseline.py).",
        f"# Tolerances, written by: python benchmarks/smoke_spread.py --seeds {' '.join(map(str, seeds))} --write-baseline {path}",
        "# three standard deviations of the metric over those seeds (the largest over the six models), at",
        f"# least {FLOOR}; a model predicting background only (F1 0) fails. They apply where the",
        "# environment differs from the recorded one. Values and `exact`: the run with the default seed",
        f"# ({default_seed}), which CI repeats; in the recorded environment every number must repeat exactly.",
        "# Re-record values, environment and exact (keeping tolerances): skunet record-baseline --workdir DIR",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(baseline_text(header, tolerances, runs[default_seed], environment()))


if __name__ == "__main__":
    main()
