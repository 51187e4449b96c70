"""skunet predict and skunet evaluate on a tiny pipeline: the round trips (the stage's own prediction
PNGs and metrics, byte for byte) and every bad input as one line, the other images still done."""

from __future__ import annotations

import json
import shutil
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, fake_raw, run_stage, write_params
from skunet.cli import _threshold
from skunet.errors import SkunetError
from skunet.predict import image_files, read_image

TINY = {"resize": {"drive": {"input_size": 64}},
        "train": {"common": {"epochs": 1, "max_train_samples": 8}, "drive": {"batch_size": 2}},
        "models": {"unet": {"base_width": 4, "depth": 2}}}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """Raw DRIVE-sized data (two test images), resized, augmented, a U-Net trained for one epoch and
    evaluated: what `dvc repro` leaves, made stage by stage."""
    root = tmp_path_factory.mktemp("project")
    write_params(root, TINY)
    fake_raw(root, "drive")
    for stage, args in (("resize.py", ["drive"]), ("augment.py", ["drive"]), ("train.py", ["drive", "unet"]),
                        ("evaluate.py", ["drive", "unet"])):
        result = run_stage(stage, *args, cwd=root)
        assert result.returncode == 0, result.stderr[-2000:]
    return root


def skunet(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "skunet", *args], cwd=cwd, env=env, capture_output=True, text=True)


def errors(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.slow
def test_predict_on_the_test_images_gives_the_evaluate_stage_png_byte_for_byte(project, tmp_path):
    images = project / "data" / "raw" / "drive" / "images"
    result = skunet("predict", "models/drive/unet.pt", str(images / "01.png"), str(images / "02.png"),
                    "--out", str(tmp_path / "out"), "--fov", "--panel", cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    for stem in ("01", "02"):
        stage_png = project / "predictions" / "drive" / "unet" / f"{stem}.png"
        assert (tmp_path / "out" / f"{stem}_prob.png").read_bytes() == stage_png.read_bytes()
        level = np.asarray(Image.open(stage_png))
        mask = np.asarray(Image.open(tmp_path / "out" / f"{stem}_mask.png"))
        assert set(np.unique(mask)) <= {0, 255} and ((level > 127) == (mask == 255)).all()
        assert np.asarray(Image.open(tmp_path / "out" / f"{stem}_fov.png")).shape == level.shape
        assert np.asarray(Image.open(tmp_path / "out" / f"{stem}_panel.png")).shape == (584, 3 * 565 + 16, 3)
    assert "2 of 2 images segmented" in result.stdout


@pytest.mark.slow
def test_evaluate_on_the_stage_predictions_gives_the_stage_metrics(project, tmp_path):
    out = tmp_path / "scored"
    result = skunet("evaluate", "predictions/drive/unet", "--dataset", "drive", "--out", str(out), cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    stage = project / "metrics" / "drive" / "unet.json"
    assert (out / "metrics.json").read_bytes() == stage.read_bytes()
    assert (out / "plots" / "per_image" / "drive.csv").read_text() == \
        (project / "plots" / "per_image" / "drive" / "unet.csv").read_text()
    assert "| **yours** | protocol `paper` |" in result.stdout and "| skunet | Table 3 |" in result.stdout
    assert "| rsan | Table 5 |" in result.stdout and "consistent with" in result.stdout


@pytest.mark.slow
def test_evaluate_names_each_missing_extra_and_mis_sized_prediction(project, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    level = np.asarray(Image.open(project / "predictions" / "drive" / "unet" / "01.png"))
    np.save(folder / "01_probability.npy", level / 255.0)  # a float map, matched by its id
    Image.fromarray(level[:-1]).save(folder / "02.png")  # one row short
    (folder / "21_test.png").write_bytes(b"")  # a training image: matches no test id
    out = tmp_path / "scored"
    result = skunet("evaluate", str(folder), "--dataset", "drive", "--out", str(out), cwd=project)
    assert result.returncode == 2
    lines = errors(result)
    assert len(lines) == 1 and "02.png: 565 x 583 px, test image 02 is 565 x 584" in lines[0], lines
    assert not out.exists()
    (folder / "02.png").unlink()
    result = skunet("evaluate", str(folder), "--dataset", "drive", "--out", str(out), cwd=project)
    assert errors(result) == [f"error: {folder}: no prediction for test image 02",
                              f"error: {folder}: 1 file(s) match no test image of drive (21_test.png); name each"
                              " prediction by its test image's id (01.png, 01_prob.npy, ...), as a .png or .npy"]
    assert result.returncode == 2
    assert not out.exists()
    Image.fromarray(level).save(folder / "02_a.png")
    Image.fromarray(level).save(folder / "02_b.png")
    lines = errors(skunet("evaluate", str(folder), "--dataset", "drive", "--out", str(out), cwd=project))
    assert lines == [f"error: {folder}: 2 predictions for test image 02: 02_a.png, 02_b.png"]
    (folder / "02_b.png").unlink()
    result = skunet("evaluate", str(folder), "--dataset", "drive", "--out", str(out), cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"note: {folder / '21_test.png'}: matches no test image of drive; ignored" in result.stderr
    scored = json.loads((out / "metrics.json").read_text())["paper"]
    assert sum(scored[k] for k in ("tp", "fp", "fn", "tn")) == 2 * 584 * 565


def _bad_inputs(folder: Path) -> dict[str, str]:
    """Each bad input of `skunet predict`, and a part of its one-line error."""
    folder.mkdir()
    (folder / "text.png").write_text("not an image\n")
    (folder / "empty.jpg").write_bytes(b"")
    Image.fromarray(np.full((64, 64), 40000, np.uint16)).save(folder / "deep.png")
    Image.fromarray(np.zeros((64, 64, 4), np.uint8), "RGBA").save(folder / "alpha.png")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "tiny.png")
    frames = [Image.fromarray(np.full((64, 64), v, np.uint8)) for v in (0, 90)]
    frames[0].save(folder / "frames.gif", save_all=True, append_images=frames[1:])
    cv2.imwrite(str(folder / "deep-colour.png"), np.full((64, 64, 3), 40000, np.uint16))
    return {"text.png": "not an image this tool reads", "empty.jpg": "not an image this tool reads",
            "deep.png": "16-bit", "alpha.png": "RGBA image (4 channels", "tiny.png": "too small to segment",
            "frames.gif": "2 frames; give one image per file", "deep-colour.png": "a 16-bit colour image"}


@pytest.mark.slow
def test_predict_names_each_bad_image_in_one_line_and_does_the_others(project, tmp_path):
    bad = _bad_inputs(tmp_path / "in")
    good = tmp_path / "in" / "grey.gif"
    Image.fromarray(np.asarray(Image.open(project / "data/raw/drive/images/01.png").convert("L"))).save(good)
    result = skunet("predict", "models/drive/unet.pt", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                    cwd=project)
    assert result.returncode == 2
    lines = errors(result)
    assert len(lines) == len(bad), lines
    for name, part in bad.items():
        (line,) = [line for line in lines if f"/{name}: " in line]
        assert part in line, line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["grey_mask.png", "grey_prob.png"]
    assert "1 of 8 images segmented, 7 not (above)" in result.stdout
    # nothing segmented: no empty folder left behind; the same file named twice is done once
    result = skunet("predict", "models/drive/unet.pt", str(tmp_path / "in" / "text.png"), "--out",
                    str(tmp_path / "none"), cwd=project)
    assert result.returncode == 2 and not (tmp_path / "none").exists()
    result = skunet("predict", "models/drive/unet.pt", str(good), str(tmp_path / "in" / "." / "grey.gif"), "--out",
                    str(tmp_path / "twice"), cwd=project)
    assert result.returncode == 0 and "1 of 1 images segmented" in result.stdout, result.stdout


@pytest.mark.slow
def test_predict_refuses_an_output_folder_it_cannot_write_in_one_line(project, tmp_path):
    (tmp_path / "a-file").write_text("")
    result = skunet("predict", "models/drive/unet.pt", "data/raw/drive/images/01.png",
                    "--out", str(tmp_path / "a-file" / "out"), cwd=project)
    assert result.returncode == 2
    (line,) = errors(result)
    assert f"{tmp_path / 'a-file' / 'out'}: cannot write here" in line and "choose another --out" in line


@pytest.mark.slow
def test_evaluate_scores_the_folder_predict_writes_and_predict_skips_its_own_results(project):
    """`skunet predict` into a folder inside its input, twice, then `skunet evaluate` on that folder:
    the second run leaves its own results alone, evaluate takes each <stem>_prob.png (its mask, FOV
    and panel set aside, unmentioned) and gives the evaluate stage's metrics byte for byte. The
    inputs are named as DRIVE ships them (01_test.tif), so the stems are not the ids."""
    images = project / "data" / "raw" / "drive" / "images"
    inputs = project / "inputs"
    inputs.mkdir()
    for stem in ("01", "02"):
        Image.open(images / f"{stem}.png").save(inputs / f"{stem}_test.tif")
    for _ in range(2):
        result = skunet("predict", "models/drive/unet.pt", str(inputs), "--out", str(inputs / "seg"), "--panel",
                        "--fov", cwd=project)
        assert result.returncode == 0 and "2 of 2 images segmented" in result.stdout, result.stderr[-2000:]
    assert sorted(p.name for p in (inputs / "seg").iterdir()) == [
        f"{s}_test_{kind}.png" for s in ("01", "02") for kind in ("fov", "mask", "panel", "prob")]
    result = skunet("evaluate", str(inputs / "seg"), "--dataset", "drive", "--out", str(project / "scored"),
                    cwd=project)
    assert result.returncode == 0 and "note:" not in result.stderr, result.stderr[-2000:]
    assert (project / "scored" / "metrics.json").read_bytes() == (project / "metrics/drive/unet.json").read_bytes()
    result = skunet("evaluate", str(inputs / "seg"), "--dataset", "drive", "--out", str(project / "s2"),
                    "--threshold", "127", cwd=project)
    assert errors(result) == ["error: --threshold 127.0: give a probability in (0, 1) (maps are read as "
                              "probabilities, 8-bit levels / 255)"]


def _write(path: Path, array: np.ndarray) -> Path:
    if path.suffix == ".npy":
        np.save(path, array)
    else:
        Image.fromarray(array).save(path)
    return path


@pytest.mark.parametrize("name, array", [
    ("m.png", np.array([[0, 1], [1, 0]], np.uint8)),  # cv2.imwrite of a 0/1 mask
    ("m.png", np.array([[0, 1], [1, 0]], np.uint16)),
    ("m.npy", np.array([[0, 1], [1, 0]], np.uint8)),
    ("m.npy", np.array([[0, 1], [1, 0]], np.int64)),
    ("m.png", np.array([[0, 255], [255, 0]], np.uint8)),
    ("m.npy", np.array([[0, 255], [255, 0]], np.int64)),  # a 0/255 mask as numpy makes it by default
    ("m.npy", np.array([[False, True], [True, False]])),
])
def test_a_mask_reads_as_zero_and_one_whatever_its_integer_type(tmp_path, name, array):
    from skunet.score import read_prediction

    assert read_prediction(_write(tmp_path / name, array)).tolist() == [[0, 1], [1, 0]]


@pytest.mark.parametrize("content, problem", [
    (b"", "unreadable"),
    (None, "unreadable (an .npz archive, not one array)"),
    (np.zeros((0, 0), np.float32), "shape (0, 0)"),
    (np.array([[0.5, np.nan]]), "1 values are NaN or infinite"),
    (np.array([[0.5, 3.0]]), "values outside [0, 1] (min 0.5, max 3)"),
    # 8-bit levels in a uint16 array: read as 16-bit levels, every pixel would be background
    (np.array([[0, 200], [255, 3]], np.uint16), "16-bit levels, none above 255 (8-bit levels stored in 16 bits?)"),
])
def test_a_bad_npy_prediction_is_one_line(tmp_path, content, problem):
    from skunet.errors import SkunetError
    from skunet.score import read_prediction

    path = tmp_path / "05.npy"
    if content is None:
        with path.open("wb") as fh:
            np.savez(fh, a=np.zeros((2, 2)))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    with pytest.raises(SkunetError, match=f"^{re.escape(str(path))}: " + re.escape(problem)):
        read_prediction(path)


@pytest.mark.slow
def test_evaluate_refuses_a_foreign_out_folder_a_wrong_raw_and_a_bad_reference_before_writing(project, tmp_path, request):
    stage = ["evaluate", "predictions/drive/unet", "--dataset", "drive"]
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "results.json").write_text("{}")
    assert errors(skunet(*stage, "--out", str(reports), cwd=project)) == [
        f"error: --out {reports}: holds results.json, which `skunet evaluate` does not write; give a new folder (or"
        " one it wrote before)"]
    raw = tmp_path / "raw"
    raw.mkdir()
    manifest = json.loads((project / "data/raw/drive/manifest.json").read_text())
    (raw / "manifest.json").write_text(json.dumps({**manifest, "dataset": "chase"}))
    out = tmp_path / "scored"
    assert errors(skunet(*stage, "--raw", str(raw), "--out", str(out), cwd=project)) == [
        f"error: --raw {raw}: holds the test images of chase, not of drive; give --dataset chase, or --raw"
        " data/raw/drive"]
    for text in ("", "drive: [\n"):
        (tmp_path / "ref.yaml").write_text(text)
        (line,) = errors(skunet(*stage, "--reference", str(tmp_path / "ref.yaml"), "--out", str(out), cwd=project))
        assert line.startswith(f"error: {tmp_path / 'ref.yaml'}: ")
    assert not out.exists()
    assert skunet(*stage, "--out", str(out), cwd=project).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "plots", "report.md"]
    assert skunet(*stage, "--out", str(out), cwd=project).returncode == 0  # its own folder: replaced
    # inside a folder the pipeline (its dvc.yaml) reads or writes: `dvc repro` would take the
    # files for its own, or delete them with its outputs
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    request.addfinalizer((project / "dvc.yaml").unlink)
    for command in (stage, ["predict", "models/drive/unet.pt", "data/raw/drive/images/01.png"]):
        for inside in ("plots/figures/mine", "metrics/drive/mine", "src/mine"):
            assert errors(skunet(*command, "--out", inside, cwd=project)) == [
                f"error: --out {inside}: inside {inside.split('/')[0]}/, which the pipeline in {project} reads or writes"
                f" (dvc.yaml), so `dvc repro` would take these files for its own or delete them; give a folder outside"
                f" it (e.g. {command[0]}-results)"]
            assert not (project / inside).exists()


def test_inputs_that_share_a_stem_are_named_by_their_path_then_their_suffix():
    from skunet.predict import output_names

    assert output_names([Path("a/01.png"), Path("b/02.png")]) == {Path("a/01.png"): "01", Path("b/02.png"): "02"}
    assert output_names([Path("x/a.png"), Path("y/a.png")]) == {Path("x/a.png"): "x__a", Path("y/a.png"): "y__a"}
    assert output_names([Path("x/a.jpg"), Path("x/a.png"), Path("y/a.gif")]) == {
        Path("x/a.jpg"): "x__a_jpg", Path("x/a.png"): "x__a_png", Path("y/a.gif"): "y__a_gif"}


@pytest.mark.slow
def test_predict_turns_a_camera_image_as_its_exif_orientation_says(project, tmp_path):
    """A JPEG stored turned, with EXIF orientation 6: the maps line up with the image as shown."""
    shown = Image.open(project / "data/raw/drive/images/01.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    shown.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "turned.jpg", exif=exif)
    result = skunet("predict", "models/drive/unet.pt", str(tmp_path / "turned.jpg"), "--out", str(tmp_path / "out"),
                    cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    assert Image.open(tmp_path / "out" / "turned_prob.png").size == shown.size


@pytest.mark.slow
@pytest.mark.parametrize("size", [True, 0, None])
def test_predict_refuses_a_checkpoint_without_a_usable_input_size(project, tmp_path, size):
    import torch

    payload = torch.load(project / "models/drive/unet.pt", weights_only=True)
    payload["input_size"] = size
    torch.save(payload, tmp_path / "edited.pt")
    result = skunet("predict", str(tmp_path / "edited.pt"), "data/raw/drive/images/01.png", "--out",
                    str(tmp_path / "out"), cwd=project)
    assert errors(result) == [f"error: {tmp_path / 'edited.pt'}: records no usable input size ({size!r}); re-run"
                              " its train stage (`dvc repro -f -s train@<dataset>-<model>`)"]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_16_bit_colour_image_is_refused_not_read_as_8_bit(tmp_path, suffix):
    """PIL reads a 16-bit RGB PNG or TIFF as 8-bit RGB, dropping the low bits unsaid."""
    path = tmp_path / f"deep{suffix}"
    cv2.imwrite(str(path), (np.random.default_rng(0).random((40, 40, 3)) * 65535).astype(np.uint16))
    with pytest.raises(SkunetError, match=re.escape(f"{path}: a 16-bit colour image; save it as an 8-bit")):
        read_image(path)
    cv2.imwrite(str(path), np.zeros((40, 40, 3), np.uint8))
    assert read_image(path).shape == (40, 40, 3)
    cv2.imwrite(str(path), (np.random.default_rng(0).random((40, 40)) * 65535).astype(np.uint16))
    with pytest.raises(SkunetError, match=re.escape(f"{path}: a 16-bit grey image; save it as an 8-bit")):
        read_image(path)


def test_predict_leaves_out_only_its_own_results_in_the_out_folder(tmp_path):
    """The user's images in --out, or in a folder inside it, are segmented; only what predict wrote
    there before (<stem>_prob.png and the like, directly in --out) is left out."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for path in (tmp_path / "a.png", imgs / "b.png", tmp_path / "a_prob.png", tmp_path / "a_mask.png"):
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    assert image_files([imgs], tmp_path) == [imgs / "b.png"]
    assert sorted(p.name for p in image_files([tmp_path], tmp_path)) == ["a.png", "b.png"]
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "vessel_mask.png")  # the user's: no vessel_prob
    assert sorted(p.name for p in image_files([tmp_path], tmp_path)) == ["a.png", "b.png", "vessel_mask.png"]
    for path in (tmp_path / "a.png", imgs / "b.png", tmp_path / "vessel_mask.png"):
        path.unlink()
    with pytest.raises(SkunetError, match=re.escape(f"{tmp_path}: no .png, .jpg, .jpeg, .tif, .tiff, .gif files in"
                                                    " this folder besides this command's own results")):
        image_files([tmp_path], tmp_path)


def test_the_threshold_comes_from_a_skunet_params_yaml_only(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    # a user's own DVC project: its dvc.yaml and params.yaml are not skunet's
    (tmp_path / "dvc.yaml").write_text("stages:\n  train:\n    cmd: python train.py\n")
    (tmp_path / "params.yaml").write_text("lr: 0.1\nevaluate:\n  threshold: 0.3\n")  # its own evaluate stage
    with caplog.at_level("INFO"):
        assert _threshold(None) == 0.5 and _threshold(0.3) == 0.3
    assert "threshold 0.5, the default" in caplog.text
    (tmp_path / "params.yaml").write_bytes(b"\xff\xfe\x00")
    assert _threshold(None) == 0.5
    params = (ROOT / "params.yaml").read_text().replace("threshold: 0.5", "threshold: 0.25")
    assert "threshold: 0.25" in params
    (tmp_path / "params.yaml").write_text(params)
    with caplog.at_level("INFO"):
        assert _threshold(None) == 0.25
    assert f"threshold 0.25, from {tmp_path / 'params.yaml'} (evaluate.threshold)" in caplog.text
    (tmp_path / "dvc.yaml").unlink()  # a params.yaml alone is not the pipeline's
    assert _threshold(None) == 0.5


def test_inputs_that_share_a_stem_never_get_one_output_name():
    """x/a.png would be named x__a, as the input x__a.png is: both are kept apart; and only the
    inputs that share a stem are renamed (A/02.png is not)."""
    from skunet.predict import output_names

    assert output_names([Path("x/a.png"), Path("y/a.png"), Path("x__a.png")]) == {
        Path("x/a.png"): "x__a_png", Path("y/a.png"): "y__a_png", Path("x__a.png"): "x__a"}
    assert output_names([Path("A/01.png"), Path("A/02.png"), Path("A/03.png"), Path("B/01.png")]) == {
        Path("A/01.png"): "A__01", Path("A/02.png"): "02", Path("A/03.png"): "03", Path("B/01.png"): "B__01"}
    files = [Path("a.b/c.png"), Path("a_b/c.png"), Path("a_b__c_png.png"), Path("a_b__c.png")]
    names = output_names(files)
    assert len(set(names.values())) == len(files) and names[Path("a_b__c.png")] == "a_b__c"


def test_an_output_name_too_long_is_one_line_naming_the_input_not_a_temporary(tmp_path):
    from skunet.predict import _write

    source = tmp_path / ("a" * 240 + ".png")
    result = _write(source, np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40), np.float32),
                    tmp_path / "out" / source.stem, 0.5, False)
    assert result.error == (f"{source}: its output names ({source.stem}_prob.png, ...) are too long for the file"
                            " system; rename the image shorter")
    assert ".tmp" not in result.error


def _evaluate_tree(out: Path, dataset: str = "drive") -> None:
    """What an earlier `skunet evaluate` wrote."""
    for kind in ("per_image", "roc", "pr"):
        (out / "plots" / kind).mkdir(parents=True)
        (out / "plots" / kind / f"{dataset}.csv").write_text("a\n")
    (out / "metrics.json").write_text(json.dumps({"paper": {}, "fov": {}}))
    (out / "report.md").write_text(f"# Your predictions on {dataset}, scored as the pipeline scores its own\n")


def test_evaluate_replaces_only_an_out_folder_whose_whole_tree_it_wrote(tmp_path):
    from skunet.score import _check_out

    out = tmp_path / "out"
    _evaluate_tree(out)
    _check_out(out)  # its own: replaced
    (out / "plots" / "figure1_final.png").write_bytes(b"mine")
    with pytest.raises(SkunetError, match=re.escape(f"--out {out}: holds plots/figure1_final.png, which `skunet"
                                                    " evaluate` does not write")):
        _check_out(out)
    (out / "plots" / "figure1_final.png").unlink()
    (out / "report.md").write_text("# My paper's report\n")  # the user's own, under the same name
    with pytest.raises(SkunetError, match=re.escape(f"--out {out}: holds report.md, which")):
        _check_out(out)
    (out / "report.md").unlink()
    with pytest.raises(SkunetError, match=re.escape(f"--out {out}: not exactly what `skunet evaluate` writes")):
        _check_out(out)
    (tmp_path / "link").symlink_to(out)
    with pytest.raises(SkunetError, match=re.escape(f"--out {tmp_path / 'link'}: a symbolic link (to {out})")):
        _check_out(tmp_path / "link")
    (tmp_path / "empty").mkdir()
    _check_out(tmp_path / "empty")


def test_a_reference_or_dvc_yaml_that_is_not_text_is_one_line_or_no_pipeline(tmp_path):
    from skunet.compare import read_yaml_file
    from skunet.config import pipeline_folder

    png = tmp_path / "ref.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(png)
    with pytest.raises(SkunetError, match=f"^{re.escape(str(png))}: not UTF-8 text; give the reference YAML file$"):
        read_yaml_file(png)
    (tmp_path / "dvc.yaml").write_bytes(png.read_bytes())
    assert pipeline_folder(tmp_path / "plots" / "mine") is None
    (tmp_path / "dvc.yaml").write_text("stages:\n  a:\n    cmd: x\n    outs: ['']\n    deps: [plots/x]\n")
    assert pipeline_folder(tmp_path / "plots" / "mine") == (tmp_path, "plots")
    assert pipeline_folder(tmp_path / "mine") is None
    (tmp_path / "dvc.yaml").write_text("stages: [a, b]\n")
    assert pipeline_folder(tmp_path / "plots" / "mine") is None


@pytest.mark.parametrize("mode, array, problem", [
    ("RGBA", np.zeros((8, 8, 4), np.uint8), "an RGBA image with transparency, which would be dropped unsaid"),
    ("LA", np.zeros((8, 8, 2), np.uint8), "an LA image with transparency"),
    (None, np.full((8, 8, 3), 40000, np.uint16), "a 16-bit colour image, which would be read at 8 bits"),
])
def test_evaluate_refuses_a_map_with_alpha_or_16_bit_colour(tmp_path, mode, array, problem):
    from skunet.score import read_prediction

    path = tmp_path / "01.png"
    if mode is None:
        cv2.imwrite(str(path), array)
    else:
        Image.fromarray(array, mode).save(path)
    with pytest.raises(SkunetError, match=f"^{re.escape(str(path))}: " + re.escape(problem)):
        read_prediction(path)


def test_evaluate_reads_an_opaque_grey_map_with_alpha_as_its_grey(tmp_path):
    """matplotlib's imsave(path, prob, cmap="gray") writes RGBA, alpha 255 everywhere: scored as
    the grey it is, not refused."""
    import matplotlib.pyplot as plt
    from skunet.score import read_prediction

    prob = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    plt.imsave(tmp_path / "01.png", prob, cmap="gray", vmin=0, vmax=1)
    with Image.open(tmp_path / "01.png") as img:
        assert img.mode == "RGBA"
    assert np.abs(read_prediction(tmp_path / "01.png") - prob).max() <= 1 / 255
    grey_alpha = np.stack([np.full((8, 8), 200, np.uint8), np.full((8, 8), 255, np.uint8)], axis=-1)
    Image.fromarray(grey_alpha, "LA").save(tmp_path / "02.png")
    assert np.allclose(read_prediction(tmp_path / "02.png"), 200 / 255)


def test_evaluate_names_a_link_to_nothing(tmp_path):
    from skunet.score import match

    (tmp_path / "01.png").symlink_to(tmp_path / "gone.png")
    matched = match(tmp_path, ["01"])
    assert matched.broken == [tmp_path / "01.png"] and matched.missing == ["01"]


def test_a_cmyk_image_is_refused_with_cmyk_advice(tmp_path):
    Image.new("CMYK", (40, 40)).save(tmp_path / "print.jpg")
    with pytest.raises(SkunetError, match=re.escape(f"{tmp_path / 'print.jpg'}: a CMYK image (for print); convert it"
                                                    " to 8-bit RGB first")):
        read_image(tmp_path / "print.jpg")


@pytest.mark.slow
def test_evaluate_refuses_a_linked_out_before_any_work_and_names_out_not_its_temporary(project, tmp_path,
                                                                                     monkeypatch):
    import errno

    from skunet import score

    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    result = skunet("evaluate", "predictions/drive/unet", "--dataset", "drive", "--out", str(tmp_path / "link"),
                    cwd=project)
    assert errors(result) == [f"error: --out {tmp_path / 'link'}: a symbolic link (to {tmp_path / 'real'}); give the"
                              " folder itself or a new one"]
    out = tmp_path / "scored"

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / ".scored.9gg21anz.tmp"))

    monkeypatch.setattr(score, "write_evaluation", read_only)
    with pytest.raises(SkunetError, match=re.escape(f"--out {out}: could not be written (Read-only file system);")):
        score.score_folder(project / "predictions/drive/unet", "drive", project / "data/raw/drive", out,
                           ROOT / "published" / "paper.yaml")
    assert not out.exists()


@pytest.mark.slow
def test_a_file_name_with_a_newline_is_still_one_error_line(project, tmp_path):
    bad = tmp_path / "in" / "two\nlines.png"
    bad.parent.mkdir()
    bad.write_text("not an image\n")
    result = skunet("predict", "models/drive/unet.pt", str(bad), "--out", str(tmp_path / "out"), cwd=project)
    assert result.returncode == 2
    (line,) = errors(result)
    assert "two\\nlines.png: not an image this tool reads" in line
