"""One line for what goes wrong outside the project's control: a full disk, an unwritable output
location, SIGTERM; nothing partial left behind."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, fake_raw, one_line_error, run_stage, write_params
from skunet.errors import Terminated, os_error_line
from test_training import make_data

RESIZE_32 = {"resize": {"drive": {"input_size": 32}}}


def _file_size_limit(limit: int):
    """A preexec_fn: files the stage writes stop at `limit` bytes, as on a full disk (Python
    ignores SIGXFSZ, so the write past the limit fails with EFBIG)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob(".*.tmp"))


@pytest.mark.parametrize(("code", "advice"), [
    (errno.ENOSPC, "free disk space"),
    (errno.EFBIG, "raise the file size limit"),
    (errno.EROFS, "make that location writable"),
    (errno.ENOTDIR, "a file is where a folder must be"),
])
def test_os_error_line_names_the_file_the_reason_and_what_to_do(code, advice):
    line = os_error_line(OSError(code, "the OS's reason", "data/resized/drive/meta.json"))
    assert line.startswith("data/resized/drive/meta.json: the OS's reason; ") and advice in line


def test_a_full_disk_in_a_stage_is_one_line_and_leaves_nothing(tmp_path):
    write_params(tmp_path, RESIZE_32)
    fake_raw(tmp_path)
    result = run_stage("resize.py", "drive", cwd=tmp_path, preexec_fn=_file_size_limit(4096))
    # numpy reports the short write without the OS's errno: the advice covers both causes
    one_line_error(result, "data/resized/drive/train_images.npy: ", "free space")
    assert not (tmp_path / "data" / "resized" / "drive").exists()
    assert _leftovers(tmp_path / "data") == []


def test_an_unwritable_output_location_is_one_line(tmp_path):
    write_params(tmp_path, RESIZE_32)
    fake_raw(tmp_path)
    (tmp_path / "data" / "resized").write_text("a file where the stage's output folder goes")
    result = run_stage("resize.py", "drive", cwd=tmp_path)
    one_line_error(result, "data/resized: File exists", "a file is where a folder must be")
    assert _leftovers(tmp_path / "data") == []


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status", "line"), [
    (signal.SIGINT, 130, "interrupted: run the same command again"),
    (signal.SIGTERM, 143, "terminated (SIGTERM): run the same command again"),
])
def test_ctrl_c_or_sigterm_stops_a_stage_with_one_line(tmp_path, signum, status, line):
    """Ctrl-C (SIGINT) or SIGTERM (a scheduler, `kill`) mid-training: exit status 128 + signal,
    one line saying how to go on, no traceback, no checkpoint, the resume state of the completed
    epochs kept, no temporaries left."""
    write_params(tmp_path, {"train": {"common": {"epochs": 500}, "drive": {"batch_size": 4}},
                            "models": {"unet": {"base_width": 4, "depth": 2}}})
    make_data(tmp_path / "data" / "augmented" / "drive")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    # the signal's default handling in the stage, also when the tests themselves run with it
    # ignored (SIGINT in a background job or under nohup), which the stage would inherit
    proc = subprocess.Popen([sys.executable, str(ROOT / "stages" / "train.py"), "drive", "unet"],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL))
    state, deadline = tmp_path / ".skunet-state" / "drive-unet.pt", time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr[-2000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(line)
    assert state.exists() and not (tmp_path / "models" / "drive" / "unet.pt").exists()
    assert _leftovers(tmp_path) == []



@pytest.mark.parametrize(("stop", "status", "line"), [
    (KeyboardInterrupt, 130, "interrupted: run the same command again"),
    (Terminated, 143, "terminated (SIGTERM): run the same command again"),
])
def test_a_stop_while_a_progress_bar_is_drawn_gets_a_line_of_its_own(tmp_path, monkeypatch, capsys,
                                                                     stop, status, line):
    """Ctrl-C or SIGTERM landing after an epoch's bar is drawn (a bar has no newline of its own)
    and before its first step, the window CI once hit: the bar is cleared first, so the stop's
    line is a line of its own, not the bar's tail."""
    from tqdm import tqdm

    from skunet import training
    from skunet.errors import exit_on_error
    from skunet.config import ModelConfig
    from test_training import CFG

    class StoppedBeforeTheFirstStep(tqdm):
        def __iter__(self):
            raise stop

    monkeypatch.setattr(training, "tqdm", StoppedBeforeTheFirstStep)
    data = make_data(tmp_path / "data")
    mcfg = ModelConfig(name="unet", base_width=4, depth=2)
    main = exit_on_error(lambda: training.train(mcfg, CFG, "drive", data, tmp_path / "model.pt",
                                                tmp_path / "log.csv", tmp_path / "state.pt"))
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == status
    stderr = capsys.readouterr().err
    assert "epoch 1/3" in stderr  # the bar was drawn
    assert stderr.strip().splitlines()[-1].startswith(line), repr(stderr[-300:])


def test_a_log_line_while_a_progress_bar_is_drawn_gets_a_line_of_its_own(capsys):
    """A stage's log line written mid-bar (a long CPU training's estimate after its first steps)
    clears the bar first instead of running on from it."""
    import logging

    from tqdm import tqdm

    from skunet.errors import exit_on_error

    @exit_on_error
    def main():
        with tqdm(range(3), desc="drive/unet epoch 1/50", leave=False) as bar:
            for step in bar:
                if step == 1:
                    logging.getLogger("skunet.training").warning("drive/unet: about 6.8 h")

    main()
    lines = capsys.readouterr().err.splitlines()
    assert any(line.strip() == "drive/unet: about 6.8 h" for line in lines), lines


def test_the_stop_line_is_a_line_of_its_own_when_a_progress_bar_was_left_open():
    """A SIGTERM that lands while an epoch's bar is being set up leaves the bar drawn and open
    (its `with` never started): the stop line still starts a line of its own."""
    code = ("from tqdm import tqdm\n"
            "from skunet.errors import Terminated, exit_on_error\n"
            "@exit_on_error\n"
            "def main():\n"
            "    bar = tqdm(range(4), desc='drive/unet epoch 2/500', leave=False)  # alive in the traceback\n"
            "    raise Terminated\n"
            "main()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 143, result.stderr
    assert result.stderr.splitlines()[-1].startswith("terminated (SIGTERM): run the same command again"), result.stderr
