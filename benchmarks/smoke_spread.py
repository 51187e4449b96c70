"""Run-to-run spread of the smoke profile's metrics, from which baselines/smoke.yaml's tolerances come.

    skunet smoke --workdir WS && cd WS
    skunet seeds queue 42 43 44 45 46 && dvc queue start -j 1   # wait: `dvc queue status`
    skunet seeds collect && cd -
    python benchmarks/smoke_spread.py --workdir WS --write-baseline baselines/smoke.yaml

The seeds run through DVC's experiment queue in the smoke workspace (`skunet seeds`, the same
dvc.yaml); this script reads their summary (WS/seeds/smoke.json) and writes every model's
paper-protocol F1 / accuracy / AUC per seed, with mean, standard deviation and range, to
benchmarks/results/smoke_spread.json. On one machine a seed's run is deterministic, so the spread
over seeds stands for what a different CPU, BLAS or thread count can do to a run.

With --write-baseline, the baseline is the workspace's own run (the default seed, which CI
repeats) and each metric's tolerance is three standard deviations over the seeds, at least the
floor below, rounded up to 0.01: the gate then catches a broken model (F1 0 is far outside)
without failing on noise.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import yaml

from skunet.baseline import baseline_text, environment
from skunet.compare import load_reproduced
from skunet.config import DATASETS, MODELS
from skunet.seeds import load_summary

METRICS = ("f1", "accuracy", "auc")
FLOOR = {"f1": 0.03, "accuracy": 0.01, "auc": 0.02}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="the smoke workspace where the seeds ran")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/smoke_spread.json"))
    parser.add_argument("--write-baseline", type=Path, default=None)
    args = parser.parse_args()

    seeds = load_summary(args.workdir / "seeds", "smoke")
    if seeds is None:
        raise SystemExit(f"{args.workdir}/seeds/smoke.json: none; run `skunet seeds collect` there first")
    summary = {}
    for ds in DATASETS:
        for m in MODELS:
            for metric in METRICS:
                cell = seeds["cells"][ds][m]["paper"][metric]
                values = list(cell["values"].values())
                summary[f"{ds}/{m}/{metric}"] = {"values": values, "mean": cell["mean"], "std": cell["sd"],
                                                 "range": cell["max"] - cell["min"]}
                print(f"{ds:6s} {m:15s} {metric:9s} " + " ".join(f"{v:.4f}" for v in values)
                      + f"  std {cell['sd']:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seeds": seeds["seeds"], "metrics": summary}, indent=2) + "\n")
    if args.write_baseline:
        write_baseline(args.write_baseline, args.workdir, summary, seeds["seeds"])


def write_baseline(path: Path, workdir: Path, summary: dict, seeds: list[int]) -> None:
    default_seed = yaml.safe_load((workdir / "params.yaml").read_text())["base"]["seed"]
    if default_seed not in seeds:
        raise SystemExit(f"the seeds must include the workspace's own seed {default_seed} for the baseline")
    run = load_reproduced(workdir / "metrics")
    tolerances = {}
    for metric in METRICS:
        spread = max(summary[f"{ds}/{m}/{metric}"]["std"] for ds in DATASETS for m in MODELS)
        tolerances[metric] = math.ceil(max(3 * spread, FLOOR[metric]) * 100) / 100
    header = [
        "# Smoke-profile baseline: the metrics `skunet smoke` produces, and what",
        "# `skunet check --baseline baselines/smoke.yaml` holds a run to (see skunet/baseline.py).",
        f"# Tolerances, written by: python benchmarks/smoke_spread.py --workdir WS --write-baseline {path}, after",
        f"# `skunet seeds queue {' '.join(map(str, seeds))}` and `skunet seeds collect` in the smoke workspace WS:",
        "# three standard deviations of the metric over those seeds (the largest over the six models), at",
        f"# least {FLOOR}; a model predicting background only (F1 0) fails. They apply where the",
        "# environment differs from the recorded one. Values and `exact`: the run with the default seed",
        f"# ({default_seed}), which CI repeats; in the recorded environment every number must repeat exactly.",
        "# Re-record values, environment and exact (keeping tolerances): skunet record-baseline --workdir DIR",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(baseline_text(header, tolerances, run, environment()))


if __name__ == "__main__":
    main()
