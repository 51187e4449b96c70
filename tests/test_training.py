"""Training: splits, loss falls, resume equals an uninterrupted run, the fast path's numerics, DDP."""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import CUDA, DEVICES, ROOT, one_line_error, run_stage, write_params
from skunet.config import deep_merge
from skunet.errors import OutOfTime, SkunetError
from skunet.checkpoints import load_checkpoint, read_log, run_context, training_summaries
from skunet.config import DropBlockSpec, ModelConfig
from skunet.data.batches import epoch_batches, split_indices
from skunet.models import build_model
from skunet import training
from skunet.training import TrainConfig, code_fingerprint, forward_loss, train

CFG = TrainConfig(epochs=3, batch_size=4, lr=0.01, seed=7, factor=0.5, patience=1, min_lr=0.0,
                  validation_fraction=0.2, split_mode="tail")


def make_data(folder: Path, n_sources: int = 4, copies: int = 4, size: int = 32) -> Path:
    """A tiny augmented set: dark 'vessel' lines on a bright background, transform-major rows."""
    rng = np.random.default_rng(0)
    images, labels, records = [], [], []
    for t in range(copies):
        for s in range(n_sources):
            label = np.zeros((size, size), np.uint8)
            for _ in range(3):
                if rng.random() < 0.5:
                    label[rng.integers(size), :] = 1
                else:
                    label[:, rng.integers(size)] = 1
            image = np.full((size, size, 3), 200, np.uint8) - (label[..., None] * 120).astype(np.uint8)
            image = np.clip(image + rng.integers(0, 30, image.shape), 0, 255).astype(np.uint8)
            images.append(image)
            labels.append(label)
            records.append({"index": len(records), "source": s, "transform": f"t{t}"})
    folder.mkdir(parents=True)
    np.save(folder / "images.npy", np.stack(images))
    np.save(folder / "labels.npy", np.stack(labels))
    (folder / "records.json").write_text(json.dumps(records))
    return folder


def run(tmp: Path, data: Path, cfg: TrainConfig = CFG, model: str = "unet_dropblock",
        device: str = "cpu", **kw):
    drop = DropBlockSpec(block_size=3, keep_prob=0.9) if model != "unet" else None
    mcfg = ModelConfig(name=model, base_width=4, depth=3, dropblock=drop)
    return train(mcfg, cfg, "drive", data, tmp / "model.pt", tmp / "log.csv", tmp / "state.pt",
                 device=torch.device(device), **kw)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_split_tail_takes_the_last_rows_and_by_source_holds_out_whole_images():
    sources = np.tile(np.arange(10), 5)  # 10 images x 5 copies, transform-major
    train_idx, val_idx = split_indices(sources, 0.1, "tail")
    assert val_idx.tolist() == list(range(45, 50)) and len(train_idx) == 45
    train_idx, val_idx = split_indices(sources, 0.2, "by_source")
    assert set(sources[val_idx]) == {8, 9} and not set(sources[train_idx]) & {8, 9}


def test_batches_never_leave_a_single_row():
    rng = torch.Generator().manual_seed(0)
    sizes = [len(b) for b in epoch_batches(9, 4, rng)]
    assert sizes == [4, 5] and sum(sizes) == 9


def test_training_writes_checkpoint_and_log_and_loss_falls(tmp_path):
    data = make_data(tmp_path / "data")
    summary = run(tmp_path, data, replace(CFG, epochs=4))
    log = np.genfromtxt(tmp_path / "log.csv", delimiter=",", names=True)
    assert log["train_loss"][-1] < 0.8 * log["train_loss"][0]
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    assert payload["model"] == "unet_dropblock" and payload["dataset"] == "drive"
    assert payload["seed"] == 7 and payload["epoch"] == summary["best_epoch"]
    assert payload["torch_version"] == str(torch.__version__)
    assert not (tmp_path / "state.pt").exists()  # resume state removed once done
    model, _ = load_checkpoint(tmp_path / "model.pt")
    assert model.training  # as built: predict() alone sets eval mode, so nothing hides a bug there


def test_checkpoints_carry_the_augmenting_libraries_into_the_run_context(tmp_path):
    data = make_data(tmp_path / "data")
    libraries = {"albumentations": "2.0.8", "numpy": "2.2.6", "opencv": "4.12.0"}
    (data / "libraries.json").write_text(json.dumps(libraries))
    (tmp_path / "models" / "drive").mkdir(parents=True)
    mcfg = ModelConfig(name="unet", base_width=4, depth=3)
    train(mcfg, replace(CFG, epochs=1), "drive", data, tmp_path / "models" / "drive" / "unet.pt",
          tmp_path / "log.csv", tmp_path / "state.pt", device=torch.device("cpu"))
    assert torch.load(tmp_path / "models" / "drive" / "unet.pt", weights_only=True)["augmented_with"] == libraries
    context = run_context("paper", tmp_path / "models")
    assert context["augmented_with"] == "albumentations 2.0.8, numpy 2.2.6, opencv 4.12.0"
    assert context["device"].startswith("CPU") and context["torch"] == str(torch.__version__)
    assert context["short_of_paper"] == "1 epoch"  # what a run labelled `paper` would be called on

def test_training_summaries_read_the_checkpoints_and_the_logs(tmp_path):
    data = make_data(tmp_path / "data")
    mcfg = ModelConfig(name="unet", base_width=4, depth=3)
    checkpoint, log_csv = tmp_path / "models" / "chase" / "unet.pt", tmp_path / "logs" / "chase" / "unet.csv"
    for path in (checkpoint, log_csv):
        path.parent.mkdir(parents=True)
    train(mcfg, replace(CFG, epochs=3), "chase", data, checkpoint, log_csv, tmp_path / "state.pt",
          device=torch.device("cpu"))
    (row,) = training_summaries(tmp_path / "models", tmp_path / "logs")
    log = read_log(log_csv)
    payload = torch.load(checkpoint, weights_only=True)
    assert (row["dataset"], row["model"], row["epochs"]) == ("chase", "unet", 3)
    assert row["best_epoch"] == payload["epoch"] and row["best_val_loss"] == payload["best_val_loss"]
    assert row["best_val_f1"] == log[payload["epoch"] - 1]["val_f1"]
    assert row["seconds"] == sum(r["seconds"] for r in log) > 0
    assert row["device"].startswith("CPU") and row["log"] == log
    # each epoch records the process's peak memory so far (the CPU: its peak resident set)
    peaks = [r["peak_mib"] for r in log]
    assert peaks == sorted(peaks) and peaks[0] > 10
    old = "\n".join(",".join(line.split(",")[:-1]) for line in log_csv.read_text().splitlines()) + "\n"
    log_csv.write_text(old)  # a log from before peak memory was recorded still reads
    assert read_log(log_csv) == [{k: v for k, v in r.items() if k != "peak_mib"} for r in log]
    (no_log,) = training_summaries(tmp_path / "models", tmp_path / "none")
    assert no_log["epochs"] == 0 and no_log["seconds"] is None and no_log["best_val_f1"] is None
    log_csv.write_text("epoch,train_loss\n1,0.5\n")
    with pytest.raises(SkunetError, match="unet.csv: not a training log"):
        training_summaries(tmp_path / "models", tmp_path / "logs")


def test_resume_after_a_stop_gives_the_same_weights(tmp_path):
    data = make_data(tmp_path / "data")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    run(tmp_path / "a", data)
    assert run(tmp_path / "b", data, stop_after_epoch=1) == {"stopped_after": 1}
    assert (tmp_path / "b" / "state.pt").exists() and not (tmp_path / "b" / "model.pt").exists()
    run(tmp_path / "b", data)
    a, b = weights(tmp_path / "a" / "model.pt"), weights(tmp_path / "b" / "model.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # byte for byte, so DVC sees the same output (no temporary file name inside the archive)
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()


def test_stale_resume_state_is_ignored(tmp_path):
    data = make_data(tmp_path / "data")
    run(tmp_path, data, stop_after_epoch=1)
    run(tmp_path, data, replace(CFG, lr=0.02, epochs=2))  # params changed: starts afresh
    log = np.genfromtxt(tmp_path / "log.csv", delimiter=",", names=True)
    assert log["epoch"].tolist() == [1, 2]


def test_a_resume_state_saved_by_other_code_starts_the_training_over(tmp_path, caplog):
    """A training stopped, then run again after its code changed (another commit on the next
    machine, a model edited), starts over: finished, it comes from the code its stage records."""
    data = make_data(tmp_path / "data")
    code = tmp_path / "code"
    (code / "models").mkdir(parents=True)
    (code / "train.py").write_text("stage\n")
    (code / "models" / "unet.py").write_text("class UNet: ...\n")
    paths = ["train.py", "models"]
    before = code_fingerprint(code, paths)
    (code / "models" / "__pycache__").mkdir()
    (code / "models" / "__pycache__" / "unet.cpython-311.pyc").write_bytes(b"this machine's bytecode")
    assert code_fingerprint(code, paths) == before  # bytecode is no code of the training
    run(tmp_path / "out", data, stop_after_epoch=1, code=before)
    run(tmp_path / "same", data, stop_after_epoch=1, code=before)
    with caplog.at_level(logging.INFO, logger="skunet.training"):
        run(tmp_path / "same", data, code=before)  # the same code resumes
    assert "resuming unet_dropblock on drive after epoch 1" in caplog.text
    (code / "models" / "unet.py").write_text("class UNet: ...  # edited\n")
    after = code_fingerprint(code, paths)
    assert after != before
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="skunet.training"):
        run(tmp_path / "out", data, code=after)
    assert "ignoring stale resume state" in caplog.text and "resuming" not in caplog.text
    assert read_log(tmp_path / "out" / "log.csv")[0]["epoch"] == 1
    assert len(read_log(tmp_path / "out" / "log.csv")) == CFG.epochs


_KILL_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_training import run, CFG
from dataclasses import asdict, replace
run(Path({out!r}), Path({data!r}), replace(CFG, epochs=4))
"""


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_weights(tmp_path):
    """SIGKILL a real training process mid-run, re-run it, compare with an uninterrupted run."""
    data = make_data(tmp_path / "data", n_sources=6, copies=6, size=48)
    for name in ("ref", "killed"):
        (tmp_path / name).mkdir()
    run(tmp_path / "ref", data, replace(CFG, epochs=4))
    script = _KILL_SCRIPT.format(tests=str(ROOT / "tests"), out=str(tmp_path / "killed"), data=str(data))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.time() + 120
    while not (tmp_path / "killed" / "state.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "model.pt").exists(), "the run finished before it could be killed"
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    a, b = weights(tmp_path / "ref" / "model.pt"), weights(tmp_path / "killed" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", ["unet", "unet_dropblock", "skunet"])
def test_fast_path_matches_fp32_within_bf16_tolerance(model, device):
    """bf16 autocast + channels_last against fp32 eager, same weights and batch.

    bf16 keeps 8 significant bits (relative rounding 2^-8 = 0.4% per operation). Summed over the
    network the loss stays within 1%, while the gradient, a sum of many terms that partly cancel,
    loses more: stated tolerances are loss relative error < 1%, relative L2 error of the whole
    gradient < 15%, and cosine similarity of the whole gradient > 0.99 (measured here: 0.01-0.1%
    / 1-10% / > 0.995). A wrong fast path (no autocast cast back, a layout bug) is far outside.
    """
    torch.manual_seed(0)
    drop = DropBlockSpec(keep_prob=1.0) if model != "unet" else None
    net = build_model(ModelConfig(name=model, base_width=8, depth=3, dropblock=drop)).eval().to(device)
    x = torch.rand(2, 3, 48, 48, device=device)
    y = (x[:, 1:2] < 0.25).float()  # a label the input explains, so gradients do not cancel out

    def loss_and_grad(fast: bool):
        net.zero_grad()
        layout = torch.channels_last if fast else torch.contiguous_format
        loss = forward_loss(net.to(memory_format=layout), x.contiguous(memory_format=layout), y, fast)
        loss.backward()
        return loss.item(), torch.cat([p.grad.detach().float().ravel() for p in net.parameters()])

    loss32, g32 = loss_and_grad(False)
    loss16, g16 = loss_and_grad(True)
    assert abs(loss16 - loss32) / loss32 < 0.01
    assert (g16 - g32).norm() / g32.norm() < 0.15
    assert torch.nn.functional.cosine_similarity(g32, g16, dim=0) > 0.99


def test_fast_path_training_loop_runs_and_resumes_on_the_cpu(tmp_path):
    """The whole fast-path loop (uint8 set held as tensors on the device, channels_last, bf16
    autocast in training and validation, fused Adam), forced on the CPU: the loss falls, the
    checkpoint loads into a plain fp32 model, and a stopped run resumes to bit-identical weights."""
    data = make_data(tmp_path / "data")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    summary = run(tmp_path / "a", data, replace(CFG, epochs=4), fast=True)
    log = np.genfromtxt(tmp_path / "a" / "log.csv", delimiter=",", names=True)
    assert log["train_loss"][-1] < 0.8 * log["train_loss"][0]
    assert np.isfinite(log["val_loss"]).all() and log["val_f1"].max() > 0
    model, payload = load_checkpoint(tmp_path / "a" / "model.pt")
    assert payload["epoch"] == summary["best_epoch"]
    # saved from the host in the default layout, so it loads on a machine without the GPU
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in payload["state_dict"].values())

    assert run(tmp_path / "b", data, replace(CFG, epochs=4), fast=True, stop_after_epoch=2) == {"stopped_after": 2}
    run(tmp_path / "b", data, replace(CFG, epochs=4), fast=True)
    a, b = weights(tmp_path / "a" / "model.pt"), weights(tmp_path / "b" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


@CUDA
def test_training_on_cuda_takes_the_fast_path_by_itself(tmp_path):
    """On a GPU, train() picks the fast path unasked (uint8 set on the device, batch rows over in
    one pinned copy, bf16, channels_last, fused Adam): the loss falls, and the checkpoint holds host
    tensors in the default layout, which load on a machine without a GPU."""
    data = make_data(tmp_path / "data")
    run(tmp_path, data, replace(CFG, epochs=4), device="cuda")
    log = np.genfromtxt(tmp_path / "log.csv", delimiter=",", names=True)
    assert log["train_loss"][-1] < 0.8 * log["train_loss"][0] and log["val_f1"].max() > 0
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    assert payload["device"] == torch.cuda.get_device_name(0)
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in payload["state_dict"].values())
    load_checkpoint(tmp_path / "model.pt")


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_compiled_training_writes_a_loadable_checkpoint(tmp_path, device):
    """train.common.compile: the checkpoint holds the plain module's keys (no `_orig_mod.`)."""
    data = make_data(tmp_path / "data", size=16)
    run(tmp_path, data, replace(CFG, epochs=1, compile=True), model="unet", device=device, fast=True)
    state = weights(tmp_path / "model.pt")
    assert not any(k.startswith("_orig_mod.") for k in state)
    load_checkpoint(tmp_path / "model.pt")


_DDP_SCRIPT = """
import os, sys, torch
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_training import run, CFG
summary = run(Path({out!r}), Path({data!r}))
rank = os.environ["RANK"]
params = torch.cat([p.detach().ravel() for p in summary["model"].parameters()])
torch.save(params, Path({out!r}) / f"params_rank{{rank}}.pt")
"""


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(tmp_path):
    """torchrun, 2 processes, gloo: both ranks end with identical weights; rank 0 writes."""
    data = make_data(tmp_path / "data")
    out = tmp_path / "ddp"
    out.mkdir()
    script = tmp_path / "ddp_train.py"
    script.write_text(_DDP_SCRIPT.format(tests=str(ROOT / "tests"), out=str(out), data=str(data)))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    p0, p1 = torch.load(out / "params_rank0.pt"), torch.load(out / "params_rank1.pt")
    assert torch.equal(p0, p1)
    payload = torch.load(out / "model.pt", weights_only=True)
    assert payload["world_size"] == 2
    log = np.genfromtxt(out / "log.csv", delimiter=",", names=True)
    assert len(log) == CFG.epochs


@pytest.mark.slow
def test_the_train_stage_under_torchrun(tmp_path):
    """The README's command, `torchrun --nproc_per_node 2 stages/train.py drive unet`, on two CPU
    processes in a workspace with tiny data: it exits 0 and writes a 2-rank checkpoint and log."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = deep_merge(params, {"train": {"common": {"epochs": 2}, "drive": {"batch_size": 4}},
                                 "models": {"unet": {"base_width": 4, "depth": 2}}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    make_data(tmp_path / "data" / "augmented" / "drive")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(ROOT / "stages" / "train.py"), "drive", "unet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = torch.load(tmp_path / "models" / "drive" / "unet.pt", weights_only=True)
    assert payload["world_size"] == 2 and payload["model_config"]["depth"] == 2
    assert len(np.genfromtxt(tmp_path / "plots" / "train" / "drive" / "unet.csv", delimiter=",", names=True)) == 2


class Clock:
    """training's clock for the deadline: `time()` reads `now`, or `now` then `then` after `calls`
    reads; `perf_counter` (the epochs' durations) is the real one."""

    def __init__(self, now: float, then: float | None = None, calls: int = 0):
        self.now, self.then, self.calls = now, then, calls
        self.perf_counter = time.perf_counter

    def time(self) -> float:
        self.calls -= 1
        return self.now if self.then is None or self.calls >= 0 else self.then


DEADLINE = 1_000_000.0


def test_a_training_past_its_deadline_stops_at_an_epoch_boundary_and_goes_on_to_the_same_weights(tmp_path, monkeypatch):
    data = make_data(tmp_path / "data")
    run(tmp_path / "a", data)
    # a moment before the deadline all along: each epoch runs whole, and no next one would fit
    monkeypatch.setattr(training, "time", Clock(DEADLINE - 1e-3))
    with pytest.raises(OutOfTime, match=r"drive/unet_dropblock stopped after epoch 1 of 3, its state saved"):
        run(tmp_path / "b", data, deadline=DEADLINE)
    assert (tmp_path / "b" / "state.pt").exists() and not (tmp_path / "b" / "model.pt").exists()
    with pytest.raises(OutOfTime, match="after epoch 2 of 3"):
        run(tmp_path / "b", data, deadline=DEADLINE)
    monkeypatch.setattr(training, "time", Clock(0.0))  # room for the last epoch
    run(tmp_path / "b", data, deadline=DEADLINE)
    a, b = weights(tmp_path / "a" / "model.pt"), weights(tmp_path / "b" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "b" / "state.pt").exists()


def test_an_epoch_that_runs_past_the_deadline_is_dropped_and_done_again_to_the_same_weights(tmp_path, monkeypatch):
    """A time-boxed machine is cut off at its limit: no step starts after the deadline, whatever
    the epoch boundaries. What remains is the last completed epoch, and going on from there gives
    the uninterrupted run's weights."""
    data = make_data(tmp_path / "data")
    run(tmp_path / "a", data)
    # the deadline passes one step into the first epoch: nothing is kept
    monkeypatch.setattr(training, "time", Clock(0.0, then=DEADLINE + 1, calls=1))
    with pytest.raises(OutOfTime, match=r"drive/unet_dropblock stopped during epoch 1 of 3 at the deadline "
                                        r"\(step 2 of \d+\), before its first epoch ended: nothing kept"):
        run(tmp_path / "b", data, deadline=DEADLINE)
    assert not (tmp_path / "b" / "state.pt").exists() and not (tmp_path / "b" / "model.pt").exists()
    # the first epoch whole, stopped at its boundary; then one step into the second
    monkeypatch.setattr(training, "time", Clock(DEADLINE - 1e-3))
    with pytest.raises(OutOfTime, match="after epoch 1 of 3"):
        run(tmp_path / "b", data, deadline=DEADLINE)
    monkeypatch.setattr(training, "time", Clock(0.0, then=DEADLINE + 1, calls=1))
    with pytest.raises(OutOfTime, match=r"stopped during epoch 2 of 3 at the deadline \(step 2 of \d+\), its state"
                                        r" after epoch 1 kept"):
        run(tmp_path / "b", data, deadline=DEADLINE)
    assert torch.load(tmp_path / "b" / "state.pt", weights_only=False)["epoch"] == 1
    monkeypatch.setattr(training, "time", Clock(0.0))
    run(tmp_path / "b", data, deadline=DEADLINE)
    a, b = weights(tmp_path / "a" / "model.pt"), weights(tmp_path / "b" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_last_epoch_is_never_cut_at_its_boundary(tmp_path, monkeypatch):
    """Nothing comes after it: a training whose last epoch ends just before the deadline writes
    its outputs, however long another epoch would take."""
    data = make_data(tmp_path / "data")
    monkeypatch.setattr(training, "time", Clock(DEADLINE - 1e-3))
    run(tmp_path, data, replace(CFG, epochs=1), deadline=DEADLINE)
    assert (tmp_path / "model.pt").exists()


@pytest.mark.slow
def test_train_stage_past_its_deadline_exits_75_with_one_line(tmp_path):
    write_params(tmp_path, {"train": {"common": {"epochs": 3}, "drive": {"batch_size": 4}},
                            "models": {"unet": {"base_width": 4, "depth": 2}}})
    make_data(tmp_path / "data" / "augmented" / "drive")
    # already past: no step starts, and there is no epoch to keep
    result = run_stage("train.py", "drive", "unet", cwd=tmp_path, env={"SKUNET_DEADLINE": str(time.time())})
    assert result.returncode == 75, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("out of time: drive/unet stopped during epoch 1 of 3 at the deadline (step 1 of ")
    assert "before its first epoch ended: nothing kept" in line
    assert line.endswith("run the same command again to go on (a training resumes after its last completed epoch)")
    assert not (tmp_path / ".skunet-state" / "drive-unet.pt").exists()
    assert not (tmp_path / "models" / "drive" / "unet.pt").exists()
    bad = run_stage("train.py", "drive", "unet", cwd=tmp_path, env={"SKUNET_DEADLINE": "tomorrow"})
    one_line_error(bad, "SKUNET_DEADLINE='tomorrow': not a time")
    done = run_stage("train.py", "drive", "unet", cwd=tmp_path, env={"SKUNET_DEADLINE": str(time.time() + 3600)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "models" / "drive" / "unet.pt").exists()


# --------------------------------------------------------------- damaged inputs: one line each
def _checkpoint(path: Path, **changes) -> Path:
    """A checkpoint as the train stage writes it (a tiny U-Net), with `changes` applied (a value
    of None drops the key)."""
    mcfg = ModelConfig(name="unet", base_width=4, depth=2)
    payload = {"model": "unet", "model_config": mcfg.model_dump(), "dataset": "drive", "epoch": 1,
               "best_val_loss": 0.5, "device": "CPU", "torch_version": str(torch.__version__),
               "state_dict": build_model(mcfg).state_dict()}
    payload.update(changes)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v for k, v in payload.items() if v is not None}, path)
    return path


class _RunsCode:
    """Unpickled, it would run a shell command: what a hostile checkpoint holds."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _other_architecture() -> dict[str, torch.Tensor]:
    return build_model(ModelConfig(name="skunet", base_width=4, depth=2)).state_dict()


def _diverged() -> dict[str, torch.Tensor]:
    weights = build_model(ModelConfig(name="unet", base_width=4, depth=2)).state_dict()
    next(v for v in weights.values() if v.is_floating_point()).fill_(float("nan"))
    return weights


BAD_CHECKPOINTS = {
    "no_model_config": (dict(model_config=None), "no 'model_config'"),
    "diverged": (dict(state_dict=_diverged()), "its weights hold NaN or infinity"),
    "other_architecture": (dict(state_dict=_other_architecture()), "weights do not fit the model"),
    "unknown_model": (dict(model_config={"name": "resnet"}), "describes no model of this project"),
    # another model's or dataset's checkpoint copied over this one: its metrics would carry this name
    "other_dataset": (dict(dataset="chase"), "a checkpoint of chase/unet, not of drive/unet (copied or moved here?)"),
    "other_model": (dict(model="skunet"), "a checkpoint of drive/skunet, not of drive/unet"),
}


@pytest.mark.parametrize("case", BAD_CHECKPOINTS)
def test_a_bad_checkpoint_is_one_line_in_every_reader(tmp_path, case):
    changes, message = BAD_CHECKPOINTS[case]
    path = _checkpoint(tmp_path / "models" / "drive" / "unet.pt", **changes)
    for read in (lambda: load_checkpoint(path), lambda: run_context("paper", tmp_path / "models"),
                 lambda: training_summaries(tmp_path / "models", tmp_path / "logs")):
        with pytest.raises(SkunetError) as err:
            read()
        text = str(err.value)
        assert "\n" not in text and text.startswith(str(path)) and message in text, text
        assert text.endswith("re-run `dvc repro -f -s train@drive-unet`"), text


def _flip_in_largest_entry(path: Path) -> None:
    """Change bytes in the middle of the largest tensor's data, leaving the zip's structure whole."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little") \
        + int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    middle = start + info.compress_size // 2
    data[middle:middle + 16] = bytes(16)
    path.write_bytes(bytes(data))


def test_a_checkpoint_damaged_inside_or_not_one_at_all_is_one_line(tmp_path):
    """torch.load checks no CRC: bytes changed inside a tensor loaded as other weights, unsaid; a
    file that is no pickle (a saved link) ended in a KeyError from the unpickler."""
    path = _checkpoint(tmp_path / "models" / "drive" / "unet.pt")
    _flip_in_largest_entry(path)
    with pytest.raises(SkunetError, match=r"unet.pt: damaged checkpoint \(\S+ fails its CRC check\); re-run"):
        load_checkpoint(path)
    folder = tmp_path / "models" / "drive" / "skunet.pt"
    folder.mkdir()
    with pytest.raises(SkunetError, match=r"skunet.pt: a folder, not a checkpoint; give the .pt file"):
        load_checkpoint(folder)
    for text in ("https://example.org/skunet.pt", "junk"):  # a saved link; a file of a few bytes
        path.write_text(text)
        with pytest.raises(SkunetError, match=r"unet.pt: truncated or damaged checkpoint \((\w+\.)?\w+: .*\); re-run"):
            load_checkpoint(path)


@pytest.mark.parametrize("case", ["no_model_config", "other_architecture", "truncated", "runs_code"])
def test_the_evaluate_stage_refuses_a_bad_checkpoint_in_one_line(tmp_path, case):
    checkpoint = tmp_path / "models" / "drive" / "unet.pt"
    marker = tmp_path / "code-ran"
    if case == "truncated":
        _checkpoint(checkpoint)
        checkpoint.write_bytes(checkpoint.read_bytes()[:3000])
    elif case == "runs_code":
        _checkpoint(checkpoint, state_dict=_RunsCode(marker))
    else:
        _checkpoint(checkpoint, **BAD_CHECKPOINTS[case][0])
    write_params(tmp_path)
    result = run_stage("evaluate.py", "drive", "unet", cwd=tmp_path)
    line = one_line_error(result, "models/drive/unet.pt", "re-run `dvc repro -f -s train@drive-unet`")
    assert "weights_only" not in result.stderr and not marker.exists()
    if case == "runs_code":
        assert "not a checkpoint this project wrote" in line and "not loaded" in line


def test_a_damaged_resume_state_says_to_delete_it(tmp_path):
    data = make_data(tmp_path / "data")
    state, marker = tmp_path / "state.pt", tmp_path / "code-ran"
    for damage in ("no fingerprint", "truncated", "runs code"):
        run(tmp_path, data, stop_after_epoch=1)
        if damage == "no fingerprint":
            payload = torch.load(state, weights_only=True)
            del payload["fingerprint"]
            torch.save(payload, state)
        elif damage == "truncated":
            state.write_bytes(state.read_bytes()[:5000])
        else:
            torch.save({"fingerprint": _RunsCode(marker)}, state)
        with pytest.raises(SkunetError) as err:
            run(tmp_path, data)
        text = str(err.value)
        assert "\n" not in text and "weights_only" not in text, text
        assert text.startswith(str(state)) and text.endswith(f"delete {state} and run the train stage "
                                                             "again to start the training over"), text
        assert not marker.exists()
        state.unlink()


@pytest.mark.slow
def test_the_train_stage_refuses_a_resume_state_that_runs_code(tmp_path):
    write_params(tmp_path, {"train": {"common": {"epochs": 1}}, "models": {"unet": {"base_width": 4, "depth": 2}}})
    make_data(tmp_path / "data" / "augmented" / "drive")
    state, marker = tmp_path / ".skunet-state" / "drive-unet.pt", tmp_path / "code-ran"
    state.parent.mkdir()
    torch.save({"fingerprint": _RunsCode(marker), "epoch": 1}, state)
    result = run_stage("train.py", "drive", "unet", cwd=tmp_path)
    line = one_line_error(result, ".skunet-state/drive-unet.pt", "not a resume state this project wrote",
                          "delete .skunet-state/drive-unet.pt")
    assert "weights_only" not in line and not marker.exists()
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("damage", ["truncated images.npy", "records.json", "records rows", "libraries.json"])
def test_damaged_augmented_data_names_the_file_and_the_stage(tmp_path, damage):
    data = make_data(tmp_path / "augmented" / "drive")
    name = damage.split()[-1] if damage != "records rows" else "records.json"
    if damage == "truncated images.npy":
        (data / name).write_bytes((data / name).read_bytes()[:1000])
    elif damage == "records rows":
        (data / name).write_text("[1, 2, 3]")
    else:
        (data / name).write_text('{"albumentations": ')
    with pytest.raises(SkunetError) as err:
        run(tmp_path, data)
    text = str(err.value)
    assert "\n" not in text and text.startswith(str(data / name)), text
    assert text.endswith("re-run `dvc repro -f -s augment@drive` to write it again"), text


@pytest.mark.slow
def test_a_full_disk_in_the_train_stage_is_one_line(tmp_path):
    """A resume state that cannot be written (here past a file size limit, as on a full disk):
    one line naming it, the OS's reason and what to do; no checkpoint, no temporary left."""
    write_params(tmp_path, {"train": {"common": {"epochs": 2}}, "models": {"unet": {"base_width": 4, "depth": 2}}})
    make_data(tmp_path / "data" / "augmented" / "drive")
    limit = 4096  # the data is read, not written; the first resume state is larger
    result = run_stage("train.py", "drive", "unet", cwd=tmp_path,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    one_line_error(result, ".skunet-state/drive-unet.pt: File too large", "free disk space")
    assert not (tmp_path / "models").exists()
    assert not list((tmp_path / ".skunet-state").iterdir())


@pytest.mark.parametrize(("train_config", "short"), [
    ({"epochs": 50, "max_train_samples": 0}, []),
    ({"epochs": 60, "max_train_samples": 0}, []),  # more than the paper: not short of it
    ({"epochs": 6, "max_train_samples": 192}, ["6 epochs", "192 training samples"]),
    ({"epochs": 1, "max_train_samples": 0}, ["1 epoch"]),
])
def test_a_training_is_short_of_the_papers_by_fewer_epochs_or_a_subset_only(train_config, short):
    from skunet.checkpoints import _short_of_the_paper

    assert _short_of_the_paper(train_config) == short
