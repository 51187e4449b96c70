"""How long trainings take, said before they run: the FLOPs of a training step, the estimate a
long CPU training gives from its first steps, and the deadline a time-boxed machine sets."""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Mapping

import torch

from skunet.config import DATASETS, MODELS, ModelConfig, model_config
from skunet.errors import SkunetError
from skunet.models import build_model

log = logging.getLogger(__name__)

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


def six_trainings_factor(params: Mapping[str, Any], dataset: str, model: str) -> float:
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
