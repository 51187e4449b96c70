"""Tests for skunet.data.augment: the 25 offline augmentations of params.yaml."""

from __future__ import annotations

import copy
import random
import subprocess
import warnings
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import yaml

from conftest import one_line_error, run_stage, write_params
from skunet.data.augment import augment_dataset, build_augmentations, stream_seed

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
SIZE = 64
N = 3
SEED = 42

NAMES = [
    "center_crop", "random_crop", "rotate", "transpose", "elastic", "grid_distortion",
    "optical_distortion", "vflip", "hflip", "brightness_contrast", "gamma", "hue_saturation_value",
    "rgb_shift", "gauss_noise", "brightness", "contrast", "motion_blur", "median_blur",
    "gaussian_blur", "channel_shuffle", "coarse_dropout", "to_grey", "grey_vflip", "grey_hflip",
    "grey_center_crop",
]  # fmt: skip
GEOMETRIC = {
    "center_crop", "random_crop", "rotate", "transpose", "elastic", "grid_distortion",
    "optical_distortion", "vflip", "hflip", "grey_vflip", "grey_hflip", "grey_center_crop",
}  # fmt: skip
GREY = {"to_grey", "grey_vflip", "grey_hflip", "grey_center_crop"}
THRESHOLD = 120  # between the "vessel" (~190) and background (~50) grey levels below


def _spec() -> list[dict]:
    return yaml.safe_load(PARAMS.read_text())["augment"]["transforms"]


def _vessels(image: np.ndarray) -> np.ndarray:
    """The label as the images below encode it: bright pixels (channel mean, so grey works too)."""
    return (image.mean(axis=-1) > THRESHOLD).astype(np.uint8)


def _images(n: int = N, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric blocky patterns (no flip or transpose maps one onto itself) with label = _vessels.

    Shapes are several pixels wide so that interpolation only disagrees with the label at edges.
    """
    rng = np.random.default_rng(0)
    images = np.empty((n, size, size, 3), np.uint8)
    for k in range(n):
        label = np.zeros((size, size), bool)
        u = size // 16
        label[2 * u : 13 * u, 3 * u + k : 6 * u + k] = True  # the long bar of an "L"
        label[10 * u : 13 * u, 3 * u : 11 * u] = True  # its foot
        label[3 * u : 6 * u, 9 * u : 14 * u - k] = True  # an off-centre block
        level = np.where(label[..., None], [210, 180, 170], [70, 45, 30])
        images[k] = np.clip(level + rng.integers(-15, 16, level.shape), 0, 255)
    labels = _vessels(images)
    return images, labels


def _run(pipelines, images, labels, seed=SEED):
    rows = len(images) * (1 + len(pipelines))
    out_images = np.zeros((rows, *images.shape[1:]), np.uint8)
    out_labels = np.zeros((rows, *labels.shape[1:]), np.uint8)
    records = augment_dataset(images, labels, pipelines, seed, out_images, out_labels, progress=False)
    return out_images, out_labels, records


@pytest.fixture(scope="module")
def augmented():
    images, labels = _images()
    pipelines = build_augmentations(_spec(), SIZE)
    out_images, out_labels, records = _run(pipelines, images, labels)
    return images, labels, pipelines, out_images, out_labels, records


def _block(out: np.ndarray, t: int) -> np.ndarray:
    """The N rows of pipeline t (transform-major)."""
    return out[(t + 1) * N : (t + 2) * N]


def test_params_section_builds_the_25_paper_augmentations_in_order():
    pipelines = build_augmentations(_spec(), SIZE)
    assert [name for name, _ in pipelines] == NAMES
    assert all(isinstance(pipeline, A.Compose) for _, pipeline in pipelines)


def test_params_build_without_warnings_at_every_size():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for size in (64, 128, 592, 1008):
            assert len(build_augmentations(_spec(), size)) == 25


def test_outputs_have_the_input_shape_dtype_and_binary_labels(augmented):
    *_, out_images, out_labels, _ = augmented
    assert out_images.shape == (N * 26, SIZE, SIZE, 3) and out_images.dtype == np.uint8
    assert out_labels.shape == (N * 26, SIZE, SIZE) and out_labels.dtype == np.uint8
    assert set(np.unique(out_labels)) <= {0, 1}


def test_every_augmentation_changes_the_image(augmented):
    images, labels, pipelines, out_images, out_labels, _ = augmented
    for t, (name, _) in enumerate(pipelines):
        changed = [not np.array_equal(a, b) for a, b in zip(_block(out_images, t), images)]
        assert any(changed), f"{name} left every image unchanged"


def test_geometric_augmentations_move_the_label_with_the_image(augmented):
    # IoU, not equality: the image is interpolated bilinearly and the label by nearest neighbour,
    # so the two may disagree on the one-pixel rim of each shape. Aligned pipelines score >= 0.96
    # here; a label shifted by one pixel (INTER_NEAREST in resize_back) scores 0.87-0.94.
    images, labels, pipelines, out_images, out_labels, _ = augmented
    for t, (name, _) in enumerate(pipelines):
        if name not in GEOMETRIC:
            continue
        moved = [not np.array_equal(a, b) for a, b in zip(_block(out_labels, t), labels)]
        assert any(moved), f"{name} moved the image but not the label"
        for image, label in zip(_block(out_images, t), _block(out_labels, t)):
            expected = _vessels(image).astype(bool)
            iou = (expected & (label == 1)).sum() / (expected | (label == 1)).sum()
            assert iou > 0.95, f"{name}: label no longer matches the image (IoU {iou:.3f})"


def test_photometric_augmentations_leave_the_label_untouched(augmented):
    images, labels, pipelines, out_images, out_labels, _ = augmented
    for t, (name, _) in enumerate(pipelines):
        if name not in GEOMETRIC:
            np.testing.assert_array_equal(_block(out_labels, t), labels, err_msg=name)


def test_grey_augmentations_output_three_equal_channels(augmented):
    *_, pipelines, out_images, _, _ = augmented
    for t, (name, _) in enumerate(pipelines):
        block = _block(out_images, t)
        is_grey = all(np.array_equal(block[..., 0], block[..., c]) for c in (1, 2))
        assert is_grey == (name in GREY), name


def test_rows_are_transform_major_with_one_record_each(augmented):
    images, labels, pipelines, out_images, out_labels, records = augmented
    assert len(records) == N * 26
    np.testing.assert_array_equal(out_images[:N], images)
    np.testing.assert_array_equal(out_labels[:N], labels)
    expected = [{"index": i, "source": i, "transform": "original"} for i in range(N)]
    expected += [
        {"index": (t + 1) * N + i, "source": i, "transform": name}
        for t, (name, _) in enumerate(pipelines)
        for i in range(N)
    ]
    assert records == expected
    # Row (t, i) is pipeline t on image i with the (t, i) stream.
    t, i = NAMES.index("elastic"), 2
    pipeline = pipelines[t][1]
    pipeline.set_random_seed(stream_seed(SEED, t, i))
    expected_row = pipeline(image=images[i], mask=labels[i])["image"]
    np.testing.assert_array_equal(out_images[(t + 1) * N + i], expected_row)


def test_same_seed_is_byte_identical_whatever_the_global_random_state(augmented):
    images, labels, _, out_images, out_labels, _ = augmented
    np.random.seed(123)
    random.seed(123)
    again_images, again_labels, _ = _run(build_augmentations(_spec(), SIZE), images, labels)
    np.testing.assert_array_equal(again_images, out_images)
    np.testing.assert_array_equal(again_labels, out_labels)


def test_a_different_seed_gives_different_augmentations(augmented):
    images, labels, pipelines, out_images, _, _ = augmented
    other, _, _ = _run(pipelines, images, labels, seed=SEED + 1)
    np.testing.assert_array_equal(other[:N], out_images[:N])
    assert not np.array_equal(other[N:], out_images[N:])
    assert stream_seed(SEED, 0, 1) != stream_seed(SEED, 1, 0)


def test_inputs_are_not_modified_and_memmap_outputs_work(tmp_path):
    images, labels = _images(n=2)
    before = images.copy(), labels.copy()
    pipelines = build_augmentations(_spec(), SIZE)
    rows = 2 * 26
    out_images = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", np.uint8, (rows, SIZE, SIZE, 3))
    out_labels = np.lib.format.open_memmap(tmp_path / "y.npy", "w+", np.uint8, (rows, SIZE, SIZE))
    augment_dataset(images, labels, pipelines, SEED, out_images, out_labels, progress=False)
    np.testing.assert_array_equal(images, before[0])
    np.testing.assert_array_equal(labels, before[1])
    in_memory, _, _ = _run(pipelines, images, labels)
    np.testing.assert_array_equal(np.asarray(out_images), in_memory)


def test_crop_sizes_follow_the_input_size():
    images, labels = _images(n=1, size=128)
    pipelines = dict(build_augmentations(_spec(), 128))
    crop = pipelines["center_crop"].transforms[0]
    assert (crop.height, crop.width) == (round(0.8 * 128),) * 2
    out = pipelines["center_crop"](image=images[0], mask=labels[0])
    assert out["image"].shape == (128, 128, 3) and out["mask"].shape == (128, 128)


# --- errors: one ValueError naming the entry ----------------------------------------------------


def _broken(index: int, **changes) -> list[dict]:
    spec = copy.deepcopy(_spec())
    for key, value in changes.items():
        if value is None:
            spec[index].pop(key)
        else:
            spec[index][key] = value
    return spec


def test_albumentations_strict_rejects_a_misspelled_argument():
    # What build_augmentations relies on: strict turns albumentations' warning into an error.
    with pytest.raises(ValueError, match="alpah"):
        A.ElasticTransform(alpah=1, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="bogus"):
            A.Compose([A.VerticalFlip(p=1.0, bogus=1)], strict=True)


def test_misspelled_argument_names_the_entry_and_the_key():
    spec = copy.deepcopy(_spec())
    spec[4]["args"]["alpah"] = spec[4]["args"].pop("alpha")
    message = r"augment\.transforms\[4\] \(elastic\): unknown argument 'alpah' for ElasticTransform$"
    with pytest.raises(ValueError, match="^params\\.yaml " + message):
        build_augmentations(spec, SIZE)


def test_unknown_type_names_the_entry():
    with pytest.raises(ValueError, match=r"augment\.transforms\[2\] \(rotate\): unknown type 'RandomRotate'"):
        build_augmentations(_broken(2, type="RandomRotate"), SIZE)


@pytest.mark.parametrize(
    ("index", "changes", "message"),
    [
        # An even kernel, which albumentations would silently make odd.
        (17, {"args": {"blur_limit": [4, 6], "p": 1.0}}, r"\[17\] \(median_blur\): bad arguments"),
        (2, {"args": {"limit": "wide", "p": 1.0}}, r"\[2\] \(rotate\): bad arguments for Rotate: limit"),
        (7, {"args": {"p": 0.5}}, r"\[7\] \(vflip\): args must set p: 1.0"),
        (0, {"args": {"height": 10, "p": 1.0}}, r"\[0\] \(center_crop\): give crop_fraction, not 'height'"),
        (0, {"crop_fraction": 1.5}, r"\[0\] \(center_crop\): crop_fraction must be"),
        (0, {"resize_back": None}, r"\[0\] \(center_crop\): crop_fraction needs resize_back"),
        (0, {"resize_back": {"interpolaton": 1}}, r"\[0\] \(center_crop\) resize_back: unknown argument"),
        (22, {"after": "to_gray"}, r"\[22\] \(grey_vflip\): 'after' must name an earlier entry"),
        (8, {"name": "vflip"}, r"\[8\] \(vflip\): the name 'vflip' is used by an earlier entry"),
        (3, {"prob": 1.0}, r"\[3\] \(transpose\): unknown key 'prob'"),
        (3, {"args": None}, r"\[3\] \(transpose\): missing key 'args'"),
    ],
)
def test_bad_entries_raise_one_line_naming_the_entry(index, changes, message):
    with pytest.raises(ValueError, match=r"^params\.yaml augment\.transforms" + message) as info:
        build_augmentations(_broken(index, **changes), SIZE)
    assert "\n" not in str(info.value)


def test_augment_dataset_rejects_wrong_output_rows():
    images, labels = _images(n=2)
    pipelines = build_augmentations(_spec(), SIZE)
    out_images = np.zeros((2 * 25, SIZE, SIZE, 3), np.uint8)
    out_labels = np.zeros((2 * 25, SIZE, SIZE), np.uint8)
    with pytest.raises(ValueError, match="out_images must be"):
        augment_dataset(images, labels, pipelines, SEED, out_images, out_labels, progress=False)


def _resized_project(root: Path) -> Path:
    """params.yaml and the resize stage's two training arrays of DRIVE (two images); their folder."""
    write_params(root)
    resized = root / "data" / "resized" / "drive"
    resized.mkdir(parents=True)
    images, labels = _images(n=2)
    np.save(resized / "train_images.npy", images)
    np.save(resized / "train_labels.npy", labels)
    return resized


@pytest.mark.parametrize("name", ["train_images.npy", "train_labels.npy"])
def test_the_augment_stage_names_a_truncated_resized_array(tmp_path, name):
    resized = _resized_project(tmp_path)
    (resized / name).write_bytes((resized / name).read_bytes()[:-500])
    one_line_error(run_stage("augment.py", "drive", cwd=tmp_path), f"data/resized/drive/{name}: truncated",
                   "re-run `dvc repro -f -s resize@drive`")
    assert not (tmp_path / "data" / "augmented" / "drive").exists()


@pytest.mark.parametrize(("name", "change", "problem"), [
    ("train_images.npy", lambda a: a[..., 0], "expected a (N, S, S, 3) uint8 array, got (2, 64, 64) uint8"),
    ("train_images.npy", lambda a: a.astype(np.float32), "expected a (N, S, S, 3) uint8 array, got (2, 64, 64, 3) float32"),
    ("train_labels.npy", lambda a: a[:1], "expected a (2, 64, 64) uint8 array, got (1, 64, 64) uint8"),
])
def test_the_augment_stage_names_a_resized_array_of_the_wrong_shape(tmp_path, name, change, problem):
    resized = _resized_project(tmp_path)
    np.save(resized / name, change(np.load(resized / name)))
    one_line_error(run_stage("augment.py", "drive", cwd=tmp_path), f"data/resized/drive/{name}: {problem}",
                   "re-run `dvc repro -f -s resize@drive`")
    assert not (tmp_path / "data" / "augmented" / "drive").exists()


def test_the_augment_stage_on_a_full_disk_says_so_in_one_line(tmp_path):
    """Its memory-mapped outputs reserve their disk space before the first row is written: on a
    disk without room, one line and exit status 2 (a sparse file ended in SIGBUS, silently, with a
    temporary left behind)."""
    _resized_project(tmp_path)
    augmented = tmp_path / "data" / "augmented"
    augmented.mkdir(parents=True)
    # 256 KiB: less than the 26 x 2 rows of 64 x 64 x 3 images (640 KiB)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(augmented)], capture_output=True)
    if mount.returncode:
        pytest.skip("needs a small disk: mounting a tmpfs (root)")
    try:
        one_line_error(run_stage("augment.py", "drive", cwd=tmp_path),
                       "data/augmented/drive/images.npy: No space left on device", "free disk space")
        assert list(augmented.iterdir()) == []
    finally:
        subprocess.run(["umount", str(augmented)], check=True)
