"""Estimates: a long CPU training says up front how long it and the six trainings take."""

from __future__ import annotations

import pytest

from conftest import ROOT
from skunet.config import load_params, model_config
from skunet.estimates import six_trainings_factor, step_flops, warn_if_long


def test_a_long_cpu_training_says_up_front_how_long_it_takes(caplog):
    with caplog.at_level("WARNING"):
        assert warn_if_long(10.0, 4, 468, 50, "drive/skunet") == pytest.approx(58500.0)
        assert warn_if_long(1.0, 4, 200, 2, "drive/unet") == pytest.approx(100.0)  # smoke-sized: quiet
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("drive/skunet: at this CPU's 0.40 images/s its 50 epochs take about 16.2 h")
    assert "skunet smoke --workdir DIR" in line and "in one piece or several" in line
    caplog.clear()
    with caplog.at_level("WARNING"):
        warn_if_long(10.0, 4, 468, 50, "drive/skunet", lambda: 4.5)
    assert "take about 16.2 h and the six trainings about 73 h" in caplog.records[0].getMessage()


def test_the_six_trainings_are_weighed_by_flops_per_step():
    """SKU-Net's two branches cost about twice U-Net's FLOPs, DropBlock none, and a step's FLOPs
    grow with the pixels; so the six paper trainings, seen from DRIVE's U-Net, weigh (1 + 1 + s)
    x (1 + (1008 / 592)^2) U-Net trainings, s SKU-Net's ratio."""
    params = load_params(ROOT / "params.yaml")
    unet = step_flops(model_config(params, "drive", "unet"), 592)
    assert step_flops(model_config(params, "drive", "unet_dropblock"), 592) == unet
    sk = step_flops(model_config(params, "drive", "skunet"), 592) / unet
    assert 1.5 < sk < 2.5
    chase = params["resize"]["chase"]["input_size"] / params["resize"]["drive"]["input_size"]
    assert six_trainings_factor(params, "drive", "unet") == pytest.approx((2 + sk) * (1 + chase**2), rel=0.02)
