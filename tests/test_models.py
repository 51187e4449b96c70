"""Tests for skunet.models: DropBlock, the SK attention and block, and the three networks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import DEVICES
from pydantic import ValidationError

from skunet.config import DROPBLOCK_MODELS, MODELS, DropBlockSpec, ModelConfig, SKSpec
from skunet.models import DropBlock2d, SelectiveKernelAttention, SelectiveKernelBlock, build_model
from skunet.models import dropblock
from skunet.models.dropblock import keep_mask, keep_seeds, seed_rate

# Small networks keep the file fast: 4 levels of 4-8-16-32 channels on 37x45 inputs.
SMALL = dict(base_width=4, depth=4)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, which spin badly on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_model(name: str, keep_prob: float | None = None, **overrides) -> torch.nn.Module:
    """A small `name`; `keep_prob` applies to the models that have DropBlock."""
    if keep_prob is not None and name in DROPBLOCK_MODELS:
        overrides["dropblock"] = DropBlockSpec(keep_prob=keep_prob)
    return build_model(ModelConfig(name=name, **{**SMALL, **overrides}))


def drop_block(block_size: int, keep_prob: float) -> DropBlock2d:
    return DropBlock2d(DropBlockSpec(block_size=block_size, keep_prob=keep_prob))


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------
# networks: shapes, memory formats, autocast


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_output_is_one_logit_map_of_the_input_size(name: str, channels_last: bool) -> None:
    torch.manual_seed(0)
    model = small_model(name)
    x = torch.rand(2, 3, 37, 45)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = model(x)
    assert y.shape == (2, 1, 37, 45)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    # logits, not probabilities: a sigmoid output could never leave [0, 1]
    assert y.min() < 0 or y.max() > 1


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("device", DEVICES)
def test_runs_under_bf16_autocast_channels_last(name: str, device: str) -> None:
    torch.manual_seed(0)
    model = small_model(name).to(device, memory_format=torch.channels_last)
    x = torch.rand(2, 3, 33, 40, device=device).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        y = model(x)
    assert y.shape == (2, 1, 33, 40)
    assert y.dtype == torch.bfloat16
    assert torch.isfinite(y).all()
    y.float().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_padding_is_bottom_right_and_cropped_back(name: str) -> None:
    torch.manual_seed(0)
    model = small_model(name).eval()
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        y = model(x)
        y_padded = model(F.pad(x, (0, 3, 0, 3)))  # 40 x 48: a multiple of 2**3, no inner padding
    torch.testing.assert_close(y, y_padded[..., :37, :45])


def test_single_image_inference_in_eval_mode() -> None:
    """Evaluation feeds one image at a time; the SK attention's BatchNorm must allow it in eval."""
    model = small_model("skunet").eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 24, 24)).shape == (1, 1, 24, 24)


def test_sk_attention_refuses_batch_of_one_in_training() -> None:
    model = small_model("skunet").train()
    with pytest.raises(ValueError, match="batch of at least 2"):
        model(torch.rand(1, 3, 24, 24))


# Hand count for U-Net at 16-32-64-128: encoder convs 293,520 + up-convs 43,120 + decoder convs
# 145,376 + 1x1 head 17 = 482,033. U-Net+DropBlock drops each 3x3 conv's bias (out) and adds
# BatchNorm's (2 * out): +704 over the 14 convs. The README quotes these numbers.
DEFAULT_PARAMS = {"unet": 482_033, "unet_dropblock": 482_737, "skunet": 1_006_833}


def test_parameter_counts_at_the_default_config() -> None:
    counts = {name: n_params(build_model(ModelConfig(name=name))) for name in MODELS}
    print("parameters at the default config:", counts)
    assert 0 < counts["unet"] < counts["unet_dropblock"] < counts["skunet"]
    assert counts == DEFAULT_PARAMS
    # DropBlock has no parameters: the keep rate does not change the count
    assert n_params(build_model(ModelConfig(name="skunet", dropblock=DropBlockSpec(keep_prob=0.8)))) == counts["skunet"]


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = small_model(name).train()
    x = torch.rand(3, 3, 32, 32)
    y = (torch.rand(3, 1, 32, 32) > 0.8).float()
    F.binary_cross_entropy_with_logits(model(x), y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert p.grad.abs().max() > 0, f"{pname} has an all-zero gradient"


def vessel_sample(size: int, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic patch: two bright curved 'vessels' ~2 px wide (14% of pixels) on a noisy
    dark background, as vessels look in an inverted green channel."""
    g = torch.Generator().manual_seed(7)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    curves = (
        (yy - (size / 2 + size / 4 * torch.sin(xx / 5.0))).abs() < 1.2,
        (xx - (size / 3 + size / 6 * torch.cos(yy / 4.0))).abs() < 1.0,
    )
    label = (curves[0] | curves[1]).float()
    image = 0.1 + 0.2 * torch.rand(3, size, size, generator=g) + 0.6 * label
    if flip:
        image, label = image.flip(-1), label.flip(-1)
    return image, label[None]


@pytest.mark.parametrize("name", MODELS)
def test_overfits_one_synthetic_sample(name: str) -> None:
    # keep_prob 1: DropBlock is a regulariser and its random masks would blur the loss curve;
    # this test asks only whether the network can fit. The sample comes with its mirror image
    # because the SK attention's BatchNorm needs a batch of two in training mode.
    torch.manual_seed(0)
    model = small_model(name, base_width=8, depth=3, keep_prob=1.0).train()
    pairs = [vessel_sample(32, flip) for flip in (False, True)]
    x = torch.stack([p[0] for p in pairs])
    y = torch.stack([p[1] for p in pairs])
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    # 80 steps: the plain U-Net (no BatchNorm, PyTorch's default init) is the slowest to start;
    # over torch seeds 0-5 it ended at 7-21% of its start, the BatchNorm models lower still
    for _ in range(80):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # predicting the vessel fraction everywhere would stop at ~58% of the start (ln 2);
    # under 30% needs the lines
    assert losses[-1] < 0.3 * losses[0], losses[::10]


# ------------------------------------------------------------------------------------------------
# build_model / ModelConfig validation


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "vnet"}, "name"),
        ({"dropblock": {"keep_prob": 0.0}}, "dropblock.keep_prob"),
        ({"dropblock": {"keep_prob": 1.5}}, "dropblock.keep_prob"),
        ({"base_width": 0}, "base_width"),
        ({"depth": -1}, "depth"),
        ({"depth": 9}, "depth"),
        ({"in_channels": 0}, "in_channels"),
        ({"dropblock": {"block_size": 0}}, "dropblock.block_size"),
        ({"sk": {"kernels": (3, 4)}}, "sk.kernels"),
        ({"sk": {"first_kernel": 2}}, "sk.first_kernel"),
        ({"sk": {"dilations": (1,)}}, "sk.dilations"),
        ({"sk": {"reduction": 0}}, "sk.reduction"),
        ({"sk": {"min_dim": 1.5}}, "sk.min_dim"),
    ],
)
def test_model_config_rejects_bad_fields(overrides: dict, field: str) -> None:
    """One set of rules (skunet.config), the same for params.yaml and a network built by hand."""
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")) as err:
        ModelConfig.model_validate({"name": "skunet", **overrides})
    if field == "name":
        assert all(name in str(err.value) for name in MODELS)


@pytest.mark.parametrize(("name", "spec"), [("unet", "dropblock"), ("unet", "sk"), ("unet_dropblock", "sk")])
def test_model_config_refuses_settings_of_a_layer_the_model_lacks(name: str, spec: str) -> None:
    with pytest.raises(ValidationError, match=f"{name} has no {spec}"):
        ModelConfig.model_validate({"name": name, spec: {}})


def test_model_config_fills_the_layers_of_its_model_with_the_defaults() -> None:
    assert ModelConfig(name="unet").dropblock is None and ModelConfig(name="unet").sk is None
    assert ModelConfig(name="unet_dropblock").dropblock == DropBlockSpec() and ModelConfig(name="unet_dropblock").sk is None
    assert ModelConfig(name="skunet").sk == SKSpec()
    # DropBlock's default keep rate is the paper's DRIVE rate, and the layer has no other default
    assert DropBlockSpec().keep_prob == 0.85


def test_model_config_accepts_lists_for_pairs() -> None:
    cfg = ModelConfig.model_validate({"name": "skunet", "sk": {"kernels": [3, 5], "dilations": [1, 1]}, **SMALL})
    assert cfg.sk.kernels == (3, 5) and cfg.sk.dilations == (1, 1)
    assert isinstance(build_model(cfg), torch.nn.Module)
    assert ModelConfig.model_validate(cfg.model_dump()) == cfg  # a checkpoint's record rebuilds it


def test_keep_prob_one_is_allowed() -> None:
    model = small_model("unet_dropblock", keep_prob=1.0)
    assert isinstance(model, torch.nn.Module)


# ------------------------------------------------------------------------------------------------
# selective kernel attention and block


@pytest.mark.parametrize("channels", [8, 48])
def test_sk_attention_weights_are_a_softmax_over_the_two_branches(channels: int) -> None:
    torch.manual_seed(0)
    attn = SelectiveKernelAttention(channels, reduction=16, min_dim=32).train()
    u1, u2 = torch.randn(2, 5, channels, 9, 11)
    w = attn(u1, u2)
    assert w.shape == (5, 2, channels, 1, 1)
    assert ((w > 0) & (w < 1)).all()
    torch.testing.assert_close(w.sum(dim=1), torch.ones(5, channels, 1, 1))
    assert w[:, 0].std(dim=0).max() > 0  # the weights depend on the sample


def test_sk_attention_width_is_max_of_c_over_r_and_l() -> None:
    """Eq. (5): d = max(C / r, L)."""
    assert SelectiveKernelAttention(1024, reduction=16, min_dim=32).fc.out_features == 64
    assert SelectiveKernelAttention(64, reduction=16, min_dim=32).fc.out_features == 32


def test_sk_weights_inside_skunet_sum_to_one() -> None:
    torch.manual_seed(0)
    model = small_model("skunet").train()
    captured = []
    for module in model.modules():
        if isinstance(module, SelectiveKernelAttention):
            module.register_forward_hook(lambda mod, inputs, out: captured.append(out.detach()))
    model(torch.rand(3, 3, 32, 32))
    assert len(captured) == 2 * SMALL["depth"] - 1  # one SK block per encoder and decoder level
    for w in captured:
        assert ((w > 0) & (w < 1)).all()
        torch.testing.assert_close(w.sum(dim=1), torch.ones_like(w[:, 0]))


def test_sk_block_fuses_branches_and_adds_the_residual() -> None:
    """Eqs. (7)-(8): Y = ReLU(a * U1 + b * U2 + X), recomputed from the block's own parts."""
    torch.manual_seed(0)
    block = SelectiveKernelBlock(8, sk=SKSpec(), drop=DropBlockSpec(keep_prob=1.0)).eval()
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        x_prime = block.conv_first(x)
        u1, u2 = block.branch_a(x_prime), block.branch_b(x_prime)
        w = block.attn(u1, u2)
        expected = torch.relu(w[:, 0] * u1 + w[:, 1] * u2 + x)
        torch.testing.assert_close(block(x), expected)
    assert block.branch_b.conv.dilation == (2, 2)


# ------------------------------------------------------------------------------------------------
# DropBlock


def test_dropblock_is_identity_in_eval_and_at_keep_prob_one() -> None:
    x = torch.randn(2, 3, 16, 16)
    assert drop_block(7, 0.5).eval()(x) is x
    assert drop_block(7, 1.0).train()(x) is x


def expected_dropped_fraction(gamma: float, size: int, block: int) -> float:
    """Exact E[dropped fraction] of a size x size map: pixel (i, j) lies under c(i) * c(j)
    possible seeds, each firing independently with rate gamma, so it is kept with probability
    (1 - gamma)**(c(i) * c(j))."""
    i = torch.arange(size)
    c = (i.clamp(max=size - block) - (i - block + 1).clamp(min=0) + 1).double()
    return 1.0 - ((1.0 - gamma) ** (c[:, None] * c[None, :])).mean().item()


LAYOUTS = pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])


@LAYOUTS
def test_dropblock_drops_about_one_minus_keep_prob(layout: torch.memory_format) -> None:
    size, block, keep_prob = 128, 7, 0.85
    torch.manual_seed(0)
    y = drop_block(block, keep_prob).train()(torch.ones(8, 32, size, size).contiguous(memory_format=layout))
    assert y.is_contiguous(memory_format=layout)  # the fast path's channels_last stays so
    dropped = (y == 0).double().mean().item()

    # 256 independent maps; one map's dropped fraction has sd ~0.018 (about 50 seeds of 49 pixels
    # in 16,384), so the mean of 256 has sd ~0.0011: a tolerance of 0.004 is ~3.5 sd.
    tolerance = 0.004
    right = expected_dropped_fraction(seed_rate(keep_prob, block, size, size), size, block)
    # the same without the valid-region term of Eq. 1
    wrong = expected_dropped_fraction((1 - keep_prob) / block**2, size, block)
    assert abs(right - wrong) > 2 * tolerance  # so a gamma without the correction would fail
    assert abs(dropped - right) < tolerance, (dropped, right, wrong)
    # Eq. 1 counts overlapping blocks twice, so the realised rate is a little under 1 - keep_prob
    # (~1 - exp(-0.15) = 0.139 for scattered blocks); the uncorrected gamma gives 0.127.
    assert abs(dropped - (1 - keep_prob)) < 0.015


def test_one_seed_drops_one_block_inside_the_map() -> None:
    block, size = 5, 12
    seeds = torch.ones(1, 1, size - block + 1, size - block + 1, dtype=torch.bool)
    seeds[0, 0, 2, 3] = False
    expected = torch.ones(1, 1, size, size, dtype=torch.bool)
    expected[0, 0, 2 : 2 + block, 3 : 3 + block] = False
    assert torch.equal(keep_mask(seeds, block), expected)
    # the last valid seed puts its block flush with the bottom-right corner
    seeds.fill_(True)
    seeds[0, 0, -1, -1] = False
    mask = keep_mask(seeds, block)
    assert (~mask).sum() == block**2 and not mask[0, 0, -block:, -block:].any()


@pytest.mark.parametrize("block", range(1, 10))
@pytest.mark.parametrize("valid", [(23, 17), (2, 3), (1, 1)])
def test_keep_mask_is_the_complement_of_the_square_max_pool_of_algorithm_1(block: int, valid) -> None:
    """The doubling and-passes give exactly the complement of Algorithm 1's max pool over the
    zero-padded block seeds, for odd and even blocks, blocks that are not powers of two, and
    valid regions smaller than the block."""
    generator = torch.Generator().manual_seed(block)
    seeds = torch.rand(2, 3, *valid, generator=generator) < 0.3  # True: a block seed
    seeds[0, 0, 0, 0], seeds[1, 2, -1, -1] = True, False  # at least one of each
    pad = block - 1
    pooled = F.max_pool2d(F.pad(seeds.float(), (pad, pad, pad, pad)), block, stride=1)
    assert torch.equal(keep_mask(~seeds, block), ~pooled.bool())


@pytest.mark.parametrize("device", DEVICES)
def test_keep_seeds_are_bernoulli_and_repeat_with_the_seed(device: str) -> None:
    """False (a block seed) with probability gamma: 4e6 draws put the rate within 5e-4 (~7 sd)."""
    torch.manual_seed(2)
    seeds = keep_seeds((4, 10, 200, 500), 0.02, torch.device(device))
    assert seeds.dtype == torch.bool and seeds.device.type == device
    assert abs((~seeds).double().mean().item() - 0.02) < 5e-4
    torch.manual_seed(2)
    assert torch.equal(keep_seeds((4, 10, 200, 500), 0.02, torch.device(device)), seeds)


def test_dropblock_gradient_is_the_scaled_mask() -> None:
    """d(output)/d(input) is count / count_kept on kept units and 0 on dropped ones."""
    x = (0.5 + torch.rand(2, 4, 30, 30)).requires_grad_()
    torch.manual_seed(5)
    y = drop_block(5, 0.8).train()(x)
    y.sum().backward()
    kept = y != 0  # x >= 0.5 everywhere, so a zero output is a dropped unit
    scale = kept.numel() / kept.sum()
    assert 0 < kept.sum() < kept.numel()
    torch.testing.assert_close(x.grad, kept.float() * scale)
    torch.testing.assert_close(y, x.detach() * kept * scale)


@LAYOUTS
def test_dropped_regions_are_whole_blocks(layout: torch.memory_format) -> None:
    """Every dropped pixel lies in a fully dropped block x block square inside the map: the dropped
    set equals its morphological opening by that square."""
    block = 7
    torch.manual_seed(1)
    y = drop_block(block, 0.9).train()(torch.ones(2, 4, 40, 40).contiguous(memory_format=layout))
    dropped = (y == 0).float().contiguous()
    assert dropped.sum() > 0
    square = torch.ones(1, 1, block, block)
    flat = dropped.view(-1, 1, 40, 40)
    eroded = (F.conv2d(flat, square) == block**2).float()  # top-left corners of full squares
    opened = (F.conv_transpose2d(eroded, square) > 0).float()
    torch.testing.assert_close(opened, flat)


def test_dropblock_masks_differ_per_channel_and_sample_and_repeat_with_the_seed() -> None:
    drop = drop_block(5, 0.8).train()
    x = torch.ones(2, 2, 32, 32)
    torch.manual_seed(3)
    a = drop(x)
    torch.manual_seed(3)
    b = drop(x)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a[0, 0], a[0, 1]) and not torch.equal(a[0, 0], a[1, 0])


def test_dropblock_rescaling_keeps_the_mean() -> None:
    torch.manual_seed(0)
    x = 0.5 + torch.rand(4, 16, 64, 64)
    y = drop_block(7, 0.8).train()(x)
    assert (y == 0).any()
    # survivors are scaled by count / count_kept: a constant map keeps its mean exactly,
    # a random one (independent of the mask) up to sampling noise of ~1e-3
    torch.testing.assert_close(y.mean(), x.mean(), rtol=0.01, atol=0)
    ones = torch.ones(4, 16, 64, 64)
    torch.manual_seed(0)
    torch.testing.assert_close(drop_block(7, 0.8).train()(ones).mean(), torch.tensor(1.0))


@pytest.mark.parametrize("size", [1, 3, 6])
def test_dropblock_clamps_the_block_on_small_maps(size: int) -> None:
    torch.manual_seed(0)
    y = drop_block(7, 0.85).train()(torch.ones(4, 8, size, size))
    assert y.shape == (4, 8, size, size)
    assert torch.isfinite(y).all()


def test_seed_rate_matches_ghiasi_eq_1() -> None:
    gamma = seed_rate(0.85, 7, 64, 48)
    assert math.isclose(gamma, 0.15 / 49 * (64 * 48) / (58 * 42))


@pytest.mark.parametrize(("block_size", "keep_prob"), [(0, 0.9), (7, 0.0), (7, 1.2)])
def test_dropblock_rejects_bad_arguments(block_size: int, keep_prob: float) -> None:
    with pytest.raises(ValueError):  # pydantic's ValidationError, from DropBlockSpec
        drop_block(block_size, keep_prob)


def _shape_keyed_seeds(shape: tuple[int, ...], gamma: float, device: torch.device) -> torch.Tensor:
    """Stand-in for keep_seeds: keep seeds from an exact integer hash of the position (uniform-looking
    values compared with gamma), the same for a given shape whatever order the layers draw in."""
    numel = math.prod(shape)
    i = torch.arange(numel, device=device, dtype=torch.int64) + numel
    uniform = ((i * 1103515245 + 12345) % 2**31 // 2**16).float().div(2**15).reshape(shape)
    return uniform >= gamma


@pytest.mark.slow
def test_compiled_dropblock_network_matches_eager_with_the_same_masks(monkeypatch) -> None:
    """train.common.compile: given the same block masks, inductor must compute what eager does.
    `x.mul(scale).masked_fill_(~keep, 0)` did not (a difference of about 2 here, torch 2.13, CPU)
    while each layer alone matched. The masks come from a shape-keyed hash, not the RNG: compiled
    code may draw the layers' seeds in another order (torch 2.11 does), which changes the masks
    but not what the network computes with them."""
    torch.manual_seed(0)
    model = small_model("unet_dropblock", base_width=8, depth=3, keep_prob=0.8).train()
    x = torch.rand(2, 64, 64, 3).permute(0, 3, 1, 2)  # the training loop's NHWC batch
    monkeypatch.setattr(dropblock, "keep_seeds", _shape_keyed_seeds)
    eager = model(x)
    torch._dynamo.reset()
    compiled = torch.compile(model)(x)
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-3)
    assert eager.std() > 0.1  # a signal that a wrong mask would move
    for layer in model.modules():
        if isinstance(layer, DropBlock2d):
            layer.keep_prob = 1.0
    assert (model(x) - eager).abs().max() > 0.1  # the masks really drop blocks
