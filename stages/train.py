"""train@<dataset>-<model>: train one model on one dataset's augmented data.

Writes models/<dataset>/<model>.pt (best by validation loss) and plots/train/<dataset>/<model>.csv.
A killed run, re-run, resumes from its last completed epoch (state in .skunet-state/).
Under torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel.
With SKUNET_DEADLINE set (a time, seconds since the epoch: `date -d '+50 min' +%s`), it stops at
the last epoch boundary before it (or, in an epoch that runs past it, before the next step), the
last completed epoch's state saved, with exit status 75; run again to go on.
"""

import sys
from pathlib import Path

# This checkout's library, not an installed copy: dvc.yaml tracks src/, so src/ is what must run.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import argparse
import functools

import torch.distributed as dist

from skunet.config import check_dataset, check_model, load_params, model_config
from skunet.errors import exit_on_error
from skunet.estimates import deadline_from_env, six_trainings_factor
from skunet.training import stage_code, train, train_config


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("model")
    args = parser.parse_args()
    dataset, model = check_dataset(args.dataset), check_model(args.model)
    params = load_params()

    train(
        model_config(params, dataset, model),
        train_config(params, dataset, model),
        dataset=dataset,
        data_dir=Path("data/augmented") / dataset,
        checkpoint=Path("models") / dataset / f"{model}.pt",
        log_csv=Path("plots/train") / dataset / f"{model}.csv",
        state_path=Path(".skunet-state") / f"{dataset}-{model}.pt",
        deadline=deadline_from_env(),
        # the other trainings' params weigh an estimate in a log line only, never an output
        six_trainings=functools.partial(six_trainings_factor, params, dataset, model),
        # the code dvc.yaml records for this stage: a resume state saved by other code starts over
        code=stage_code(ROOT),
    )
    if dist.is_initialized():  # launched by torchrun
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
