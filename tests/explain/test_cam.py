"""Class activation maps: methods, target layers per architecture, and compute_cams'
promises (modes, gradients, hooks, inference code, empty maps, a strip-reading model)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam.base_cam import BaseCAM
from torch import nn

from geotag.errors import InputError
from geotag.explain import cam as cam_module
from geotag.explain.cam import (
    METHOD_NAMES,
    TokenGrid,
    channels_first,
    compute_cams,
    target_layer,
)
from geotag.explain.heat import band_area_share, band_mass, pointing_game, thirds
from geotag.train.bands import Band
from geotag.train.model import create_classifier

PX = 64
BOTTOM = Band("bottom", 0.1)


def images(batch: int = 2, height: int = PX, width: int = PX, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def timm_model(name: str, **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=5, **kwargs).eval()


def small_swin() -> nn.Module:
    return timm_model(
        "swin_tiny_patch4_window7_224", img_size=PX, window_size=2, embed_dim=16,
        depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
    )  # fmt: skip


class BandReader(nn.Module):
    """A model that reads one band of rows only: its ``reader`` layer keeps the feature map's
    bottom (or top) rows and zeroes the rest, and the logits come from what it kept."""

    def __init__(self, side: str = "bottom", rows: int = 1, explode: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
        self.reader = nn.Identity()
        self.head = nn.Linear(8, 3, bias=False)
        with torch.no_grad():
            self.head.weight.abs_()  # positive evidence: a map with heat for every class
        self.side, self.rows, self.explode = side, rows, explode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.explode:
            raise IndexError("a bug deep inside a forward pass")
        features = self.features(x)
        keep = torch.zeros_like(features)
        if self.side == "bottom":
            keep[:, :, -self.rows :, :] = 1
        else:
            keep[:, :, : self.rows, :] = 1
        kept = self.reader(features * keep)
        out: torch.Tensor = self.head(kept.flatten(2).sum(-1))
        return out


class DeadLayer(nn.Module):
    """A conv stage that a ReLU always zeroes: no heat can reach the map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4, padding=1)
        with torch.no_grad():
            self.conv.bias.fill_(-1e4)
        self.dead = nn.ReLU()
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.dead(self.conv(x)).mean((2, 3)))
        return out


# -- methods -----------------------------------------------------------------------------
def test_methods_table_names_every_method_once() -> None:
    table = cam_module.METHODS
    assert tuple(table) == METHOD_NAMES
    assert set(METHOD_NAMES) == {
        "gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "scorecam",
    }  # fmt: skip
    assert all(issubclass(cls, BaseCAM) for cls in table.values())
    assert table["gradcam"].__name__ == "GradCAM"
    assert table["gradcam++"].__name__ == "GradCAMPlusPlus"


def test_method_names_need_no_torch() -> None:
    # The CLI's --method choices must not cost the seconds torch and grad-cam take to load.
    code = (
        "import sys; from geotag.explain import cam, heat, metadata, overlay; "
        "print(','.join(cam.METHOD_NAMES)); "
        "print(sorted(m for m in ('torch', 'pytorch_grad_cam', 'matplotlib', 'sklearn') "
        "if m in sys.modules))"
    )
    root = str(Path(__file__).parents[2])
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert out.stdout.splitlines() == [",".join(METHOD_NAMES), "[]"]


def test_unknown_method_suggests_the_close_one() -> None:
    with pytest.raises(InputError, match=r"^unknown CAM method 'gradcm'; did you mean gradcam\?$"):
        compute_cams(timm_model("test_resnet"), images(1), method="gradcm")


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_method_gives_maps_of_the_input_size(
    method: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = compute_cams(timm_model("test_resnet"), images(2, PX, 96), method=method)
    assert result.maps.shape == (2, PX, 96) and result.maps.dtype == np.float32
    assert result.maps.min() >= 0.0 and result.maps.max() <= 1.0
    assert not result.all_zero.any()
    assert np.allclose(result.maps.reshape(2, -1).max(axis=1), 1.0, atol=1e-4)
    assert capsys.readouterr() == ("", "")  # scorecam's progress bar is gone too


# -- target layers -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("resnet10t", {}, lambda m: m.layer4),
        ("test_convnext", {}, lambda m: m.stages[-1]),
        ("convnext_atto", {}, lambda m: m.stages[-1]),
        ("test_efficientnet", {}, lambda m: m.blocks[-1]),
        ("test_vit", {"img_size": PX}, lambda m: m.blocks[-1].norm1),
        ("test_mambaout", {}, lambda m: m.stages[-1]),
    ],
)
def test_automatic_layer_is_the_last_stage(name: str, kwargs: dict, expected: object) -> None:
    model = timm_model(name, **kwargs)
    layer, _ = target_layer(model)
    assert layer is expected(model)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("side", "expected"),
    [(224, "layer4"), (128, "layer4"), (64, "layer3"), (32, "layer2"), (16, "layer1")],
)
def test_small_images_get_a_stage_whose_map_is_fine_enough(side: int, expected: str) -> None:
    # resnet10t's stages reduce 4, 8, 16 and 32 times: at 64 px layer4 would be 2 x 2.
    model = timm_model("resnet10t")
    layer, _ = target_layer(model, input_side=side)
    assert layer is model.get_submodule(expected)
    assert compute_cams(model, images(1, side, side)).maps.shape == (1, side, side)


def test_cnn_maps_need_no_reshape_but_nhwc_models_are_permuted() -> None:
    assert target_layer(timm_model("resnet10t"))[1] is None
    assert target_layer(timm_model("test_convnext"))[1] is None
    swin = small_swin()
    layer, reshape = target_layer(swin)
    assert layer is swin.layers[-1] and reshape is channels_first
    nhwc = torch.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    assert torch.equal(reshape(nhwc), nhwc.permute(0, 3, 1, 2))
    result = compute_cams(swin, images(2))
    assert result.maps.shape == (2, PX, PX) and not result.all_zero.any()


@pytest.mark.parametrize(
    ("name", "kwargs", "grid", "prefix"),
    [
        ("vit_tiny_patch16_224", {"img_size": PX}, (4, 4), 1),
        ("test_vit", {"img_size": (PX, 96)}, (4, 6), 1),  # not square: not 14 x 14 either
        ("test_vit", {"img_size": PX, "reg_tokens": 4}, (4, 4), 5),
    ],
)
def test_vit_tokens_are_reshaped_to_the_models_own_grid(
    name: str, kwargs: dict, grid: tuple[int, int], prefix: int
) -> None:
    model = timm_model(name, **kwargs)
    _, reshape = target_layer(model)
    assert reshape == TokenGrid(grid[0], grid[1], prefix)
    size = kwargs["img_size"]
    height, width = (size, size) if isinstance(size, int) else size
    result = compute_cams(model, images(2, height, width))
    assert result.maps.shape == (2, height, width) and not result.all_zero.any()


def test_token_grid_puts_each_patch_in_its_place() -> None:
    grid = TokenGrid(2, 3, prefix=1)
    tokens = torch.zeros(1, 7, 2)
    tokens[0, 1:, 0] = torch.arange(6.0)  # patch i*3 + j carries the value i*3 + j
    tokens[0, 0, :] = 99.0  # the class token is dropped
    out = grid(tokens)
    assert out.shape == (1, 2, 2, 3)
    assert torch.equal(out[0, 0], torch.tensor([[0.0, 1, 2], [3, 4, 5]]))
    assert not (out == 99.0).any()
    assert torch.equal(grid(tokens[:, 1:])[0, 0], out[0, 0])  # CaiT: no class token yet
    with pytest.raises(InputError, match=r"gives 10 tokens, but the model's patch grid is 2 x 3"):
        grid(torch.zeros(1, 10, 2))


def test_vit_last_block_output_is_the_class_token_trap() -> None:
    # The class-token head reads no patch token after the last block: zero gradients, an
    # empty map. The automatic choice (the last block's norm1) sees the patches.
    model = timm_model("test_vit", img_size=PX)
    trap = compute_cams(model, images(2), layer="blocks.5")
    assert trap.all_zero.all() and not trap.maps.any()
    assert not compute_cams(model, images(2)).all_zero.any()


def test_layer_override_and_its_one_line_error() -> None:
    model = timm_model("resnet10t")
    layer, _ = target_layer(model, "layer3")
    assert layer is model.layer3
    with pytest.raises(InputError) as info:
        target_layer(model, "layer5")
    message = str(info.value)
    assert message.startswith("the model has no layer 'layer5'; try ")
    assert "layer4" in message and "\n" not in message


class Container(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.parts = nn.ModuleList([nn.Conv2d(3, 4, 3), nn.ReLU()])
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for part in self.parts:
            x = part(x)
        out: torch.Tensor = self.head(x.mean((2, 3)))
        return out


def test_layers_that_give_no_feature_map_are_one_line() -> None:
    with pytest.raises(InputError) as info:
        compute_cams(timm_model("test_resnet"), images(1), layer="fc")
    assert str(info.value) == (
        "layer 'fc' gives (1, 5), not a feature map (batch, channels, height, width); "
        "name another layer"
    )
    with pytest.raises(InputError, match=r"^layer 'parts' is never run by the model's forward"):
        compute_cams(Container(), images(1), layer="parts")
    assert compute_cams(Container(), images(1), layer="parts.1").maps.shape == (1, PX, PX)


def test_multi_view_model_uses_its_backbone() -> None:
    torch.manual_seed(0)
    model = create_classifier("resnet10t", 4, views=3)
    assert target_layer(model)[0] is model.backbone.layer4  # type: ignore[union-attr]
    assert target_layer(model, "layer3")[0] is model.backbone.layer3  # type: ignore[union-attr]
    assert target_layer(model, "backbone.layer3")[0] is model.backbone.layer3  # type: ignore[union-attr]


def test_multi_view_single_images_are_explained_through_backbone_and_head() -> None:
    torch.manual_seed(0)
    model = create_classifier("resnet10t", 4, views=3).eval()
    x = images(2)
    result = compute_cams(model, x)
    assert result.maps.shape == (2, PX, PX) and not result.all_zero.any()
    with torch.no_grad():  # mean fusion: one image seen in every heading = backbone + head
        expected = torch.softmax(model.head(model.backbone(x)), dim=1).numpy()  # type: ignore[operator]
    assert np.allclose(result.probabilities, expected, atol=1e-5)


def test_multi_view_places_get_one_map_per_view() -> None:
    torch.manual_seed(0)
    model = create_classifier("resnet10t", 4, views=3).eval()
    places = torch.randn(2, 3, 3, PX, PX, generator=torch.Generator().manual_seed(1))
    result = compute_cams(model, places, targets=[1, 2])
    assert result.maps.shape == (2, 3, PX, PX) and result.all_zero.shape == (2, 3)
    assert result.targets.tolist() == [1, 2]
    with torch.no_grad():
        assert np.allclose(result.probabilities, torch.softmax(model(places), 1).numpy(), atol=1e-5)
    with pytest.raises(InputError, match="scorecam explains single views only"):
        compute_cams(model, places, method="scorecam")
    with pytest.raises(InputError, match=r"3-view model explains images \(B, 3, H, W\)"):
        compute_cams(model, torch.zeros(2, 2, 3, PX, PX))


# -- compute_cams' promises --------------------------------------------------------------
def test_a_model_reading_the_bottom_strip_puts_its_heat_there() -> None:
    x = images(4)
    area = band_area_share(BOTTOM, PX, PX)
    for method in ("gradcam", "hirescam", "layercam"):
        bottom = compute_cams(BandReader("bottom"), x, method=method, layer="reader").maps
        top = compute_cams(BandReader("top"), x, method=method, layer="reader").maps
        assert (band_mass(bottom, BOTTOM) > 0.7).all(), method
        assert (band_mass(top, BOTTOM) < area).all(), method
        assert pointing_game(bottom, BOTTOM).all() and not pointing_game(top, BOTTOM).any()
        assert (thirds(bottom)[:, 2] > 0.95).all() and (thirds(top)[:, 0] > 0.95).all()


def test_predicted_and_given_targets() -> None:
    model = timm_model("test_resnet")
    x = images(3)
    with torch.no_grad():
        logits = model(x)
    result = compute_cams(model, x)
    assert result.targets.tolist() == logits.argmax(1).tolist()
    assert np.allclose(result.probabilities, torch.softmax(logits, 1).numpy(), atol=1e-5)
    assert compute_cams(model, x, targets=[4, 0, 1]).targets.tolist() == [4, 0, 1]
    with pytest.raises(InputError, match=r"^got 2 targets for 3 images; give one per image$"):
        compute_cams(model, x, targets=[1, 2])
    with pytest.raises(InputError, match=r"target class 5 is outside the model's 5 classes"):
        compute_cams(model, x, targets=[1, 2, 5])


def test_restores_modes_and_gradients() -> None:
    model = BandReader()
    model.train()
    model.features.eval()  # a mixed state, as with frozen batch norm
    frozen = model.features[0].bias
    frozen.requires_grad_(False)
    kept = torch.full_like(model.head.weight, 7.0)
    model.head.weight.grad = kept
    compute_cams(model, images(2), layer="reader")
    assert model.training and model.head.training and model.reader.training
    assert not model.features.training and not model.features[0].training
    assert model.head.weight.grad is kept and torch.equal(kept, torch.full_like(kept, 7.0))
    assert model.features[0].weight.grad is None
    assert model.features[0].weight.requires_grad and not frozen.requires_grad


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_works_inside_inference_code(context: type) -> None:
    model = timm_model("test_resnet")
    expected = compute_cams(model, images(2))
    with context():
        x = images(2)  # an inference tensor under inference_mode
        result = compute_cams(model, x)
    assert np.allclose(result.maps, expected.maps, atol=1e-5)
    assert not result.all_zero.any()


def test_hooks_are_released_and_errors_propagate(capsys: pytest.CaptureFixture[str]) -> None:
    model = timm_model("test_resnet")
    layer, _ = target_layer(model)
    compute_cams(model, images(1))
    assert not layer._forward_hooks and not layer._backward_hooks
    # pytorch-grad-cam's own ``with`` would print an IndexError and swallow it
    broken = BandReader(explode=True)
    with pytest.raises(IndexError, match="a bug deep inside"):
        compute_cams(broken, images(1), layer="reader")
    assert not broken.reader._forward_hooks
    assert broken.training  # modes are restored on failure too
    assert capsys.readouterr() == ("", "")


def test_maps_without_heat_are_flagged_and_zero() -> None:
    result = compute_cams(DeadLayer(), images(2), layer="dead")
    assert result.all_zero.tolist() == [True, True]
    assert not result.maps.any() and result.maps.shape == (2, PX, PX)
    # A CNN's last stage at 32 px is 1 x 1: a flat map, which carries no "where".
    flat = compute_cams(timm_model("resnet10t"), images(2, 32, 32), layer="layer4")
    assert flat.all_zero.all()


def test_bad_images_are_one_line() -> None:
    with pytest.raises(
        InputError, match=r"^images must be a batch \(B, 3, H, W\); got \(3, 64, 64\)$"
    ):
        compute_cams(timm_model("test_resnet"), torch.zeros(3, PX, PX))
