"""Class activation maps through pytorch-grad-cam, for geotag's timm classifiers.

``METHODS`` maps a method's name to its pytorch-grad-cam class, resolved on first use from
the name table :data:`geotag.explain.methods.METHODS` (which the CLI reads without
importing torch or grad-cam, several seconds); ``METHOD_NAMES`` are its keys.
``target_layer`` picks the layer a method reads; ``compute_cams`` returns one map per image
and flags the maps that carry no heat.

The layer, chosen automatically from the architecture:

- CNNs (ResNet, ConvNeXt, EfficientNet ...): the last feature stage, the last entry of
  timm's ``feature_info`` (``layer4``, ``stages.3``, ``blocks.6`` ...), unless its map
  would be smaller than ``MIN_MAP_SIDE`` cells a side at the images' size (a resnet's
  last stage is 2 x 2 at 64 px, 1 x 1 at 32 px: too coarse to tell a bottom strip from
  the road above it); then the deepest stage whose map is that fine, from the stage's
  ``reduction``.
- ViT-like models (``patch_embed`` and ``blocks``, whose blocks pass token sequences):
  the last block's ``norm1``. The last block's *output* would not do: a class-token head
  reads only the class token there, so every patch token's gradient is zero and the map
  comes back empty; ``norm1`` still reaches every patch through the block's attention.
  Tokens become a map on the model's own patch grid (``patch_embed.grid_size``) once its
  ``num_prefix_tokens`` (class, distillation, register tokens) are dropped.
- NHWC models (Swin, MambaOut: timm's ``output_fmt == "NHWC"``): the last feature stage,
  permuted to channels-first.

Multi-view models (:class:`~geotag.train.model.MultiViewClassifier`): layer names are the
backbone's (``layer4``; ``backbone.layer4`` works too). Images (B, 3, H, W) are explained
one view at a time, each as a place seen identically in all V headings; for ``mean``
fusion that is exactly backbone + head on that one image (for ``concat``, the head's V
blocks all see it). Places (B, V, 3, H, W) are explained whole: one map per view, for the
class explained for the fused prediction.

Weak spots of pytorch-grad-cam that this module covers:

- its CAM object calls ``model.eval()`` and never restores the mode: each module's own
  train/eval mode is put back afterwards;
- its ``__exit__`` prints and swallows ``IndexError``: hooks are released in a ``finally``
  of our own, and every exception propagates;
- ``ScoreCAM`` draws a tqdm progress bar per image: ``scorecam`` is a quiet subclass;
- its ``backward`` fills parameter gradients (and ``zero_grad`` drops the caller's):
  parameters are frozen for the call, gradients reach the layer through the input
  instead (skipping the weight gradients' cost), and ``.grad``/``requires_grad`` are put
  back;
- a map can come back all zeros (all evidence negative and clipped, no gradient reaching
  the layer, or a flat map, which its min-max scaling turns into zeros; a 1 x 1 feature
  map, as a CNN's last stage has at 32 px, is always flat): such maps are zeroed and
  flagged in :attr:`CamResult.all_zero`, never passed off as a picture.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from geotag.errors import InputError
from geotag.explain.methods import METHODS as NAMED_METHODS

#: The automatic layer's map must be at least this many cells a side (see above).
MIN_MAP_SIDE = 4

if TYPE_CHECKING:
    import torch
    from torch import nn

    METHODS: dict[str, type]

METHOD_NAMES = tuple(NAMED_METHODS)
"""The keys of ``METHODS``, importable without torch. ``eigencam`` is class-agnostic (the
first principal component of the layer's activations); the others explain a class."""

EMPTY_PEAK = 1e-3
"""A map whose scaled maximum stays below this carried (numerically) no heat: pytorch-grad-cam
divides each map by ``1e-7 + max``, so a map with any real heat peaks at about 1."""


@functools.cache
def _methods() -> dict[str, type]:
    import pytorch_grad_cam
    from pytorch_grad_cam import ScoreCAM

    class QuietScoreCAM(ScoreCAM):  # type: ignore[misc]
        """ScoreCAM without its tqdm progress bar (library code never prints)."""

        def get_cam_weights(
            self,
            input_tensor: torch.Tensor,
            target_layer: nn.Module,
            targets: list[Callable[[torch.Tensor], torch.Tensor]],
            activations: np.ndarray,
            grads: np.ndarray | None,
        ) -> np.ndarray:
            import torch

            # As ScoreCAM: each channel, upsampled and scaled to [0, 1], masks the input;
            # the target's score on the masked input is the channel's weight.
            with torch.no_grad():
                size = input_tensor.shape[-2:]
                upsample = torch.nn.UpsamplingBilinear2d(size=(int(size[0]), int(size[1])))
                upsampled = upsample(torch.from_numpy(activations).to(self.device))
                flat = upsampled.flatten(2)
                low = flat.min(dim=-1)[0][:, :, None, None]
                high = flat.max(dim=-1)[0][:, :, None, None]
                upsampled = (upsampled - low) / (high - low + 1e-8)
                masked = input_tensor[:, None] * upsampled[:, :, None]
                step = int(getattr(self, "batch_size", 16))
                scores: list[float] = []
                for target, channels in zip(targets, masked, strict=True):
                    for start in range(0, channels.shape[0], step):
                        outputs = self.model(channels[start : start + step])
                        scores.extend(float(target(o).cpu()) for o in outputs)
                weights = torch.tensor(scores).view(activations.shape[0], activations.shape[1])
                return torch.softmax(weights, dim=-1).numpy()  # type: ignore[no-any-return]

    table: dict[str, type] = {
        name: getattr(pytorch_grad_cam, class_name) for name, class_name in NAMED_METHODS.items()
    }
    table["scorecam"] = QuietScoreCAM
    return table


def __getattr__(name: str) -> Any:
    # ``METHODS`` is built on first use: importing pytorch-grad-cam takes seconds.
    if name == "METHODS":
        return _methods()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- reshape transforms: whatever a layer outputs -> (B, C, h, w) ---------------------------
@dataclass(frozen=True)
class TokenGrid:
    """ViT tokens (B, prefix + height * width, C) -> a map (B, C, height, width).

    Built from the model's own patch grid; a 4-D input (a convolution picked by name, such
    as ``patch_embed.proj``) passes through unchanged.
    """

    height: int
    width: int
    prefix: int

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.ndim != 3:
            return tensor
        batch, tokens, channels = tensor.shape
        patches = self.height * self.width
        # Blocks before the class token joins (CaiT) carry the patches alone.
        if tokens not in (self.prefix + patches, patches):
            raise InputError(
                f"the layer gives {tokens} tokens, but the model's patch grid is "
                f"{self.height} x {self.width} plus {self.prefix} prefix token(s); "
                "give images of the model's input size"
            )
        grid = tensor[:, tokens - patches :, :].reshape(batch, self.height, self.width, channels)
        return grid.permute(0, 3, 1, 2)


def channels_first(tensor: torch.Tensor) -> torch.Tensor:
    """NHWC feature maps (Swin, MambaOut) -> NCHW, as pytorch-grad-cam expects."""
    return tensor.permute(0, 3, 1, 2) if tensor.ndim == 4 else tensor


# -- the target layer ------------------------------------------------------------------------
def target_layer(
    model: nn.Module, name: str | None = None, input_side: int | None = None
) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor] | None]:
    """The layer a CAM reads for ``model`` and the transform that makes its output NCHW.

    ``name`` (a ``get_submodule`` path such as ``layer3`` or ``blocks.5.norm1``) overrides
    the automatic choice described in the module docstring; ``input_side`` (the images'
    shorter side in pixels) lets that choice skip CNN stages whose map would be too coarse.
    """
    network = _backbone(_unwrap(model))
    if name is None:
        layer = _automatic_layer(network, input_side)
    else:
        layer = _named_layer(model, network, name)
    return layer, _reshape_for(network)


def _unwrap(model: nn.Module) -> nn.Module:
    from geotag.train.model import unwrap

    return unwrap(model)


def _backbone(model: nn.Module) -> nn.Module:
    from geotag.train.model import MultiViewClassifier

    return model.backbone if isinstance(model, MultiViewClassifier) else model


def _is_vit(network: nn.Module) -> bool:
    return (
        hasattr(getattr(network, "patch_embed", None), "grid_size")
        and hasattr(network, "blocks")
        and hasattr(network, "num_prefix_tokens")
        and str(getattr(network, "output_fmt", "NCHW")) != "NHWC"
    )


def _automatic_layer(network: nn.Module, input_side: int | None) -> nn.Module:
    if _is_vit(network):
        last: nn.Module = network.blocks[-1]  # type: ignore[index,assignment]
        norm = getattr(last, "norm1", None)
        return norm if norm is not None else last
    info = [entry for entry in getattr(network, "feature_info", None) or [] if entry]
    for entry in _stages_by_preference(info, input_side):
        module = entry.get("module") if isinstance(entry, dict) else None
        if module:
            with contextlib.suppress(AttributeError):  # a few timm models misname it
                return network.get_submodule(str(module))
    raise InputError(
        f"cannot choose a target layer for {type(network).__name__} automatically; "
        f"name one (e.g. {', '.join(_some_names(network, ''))})"
    )


def _stages_by_preference(info: list[Any], input_side: int | None) -> list[Any]:
    """The last stage first, or the deepest stages whose map is fine enough first."""
    if input_side is None or not info:
        return info[-1:]

    def side(entry: Any) -> float:
        reduction = entry.get("reduction") if isinstance(entry, dict) else None
        return input_side / reduction if reduction else float(input_side)

    fine = [entry for entry in info if side(entry) >= MIN_MAP_SIDE]
    # Too small an input for any stage to reach the minimum: the finest map there is.
    return [fine[-1]] if fine else [max(info, key=side)]


def _named_layer(model: nn.Module, network: nn.Module, name: str) -> nn.Module:
    owners = [network] if network is model else [network, _unwrap(model)]
    for owner in owners:
        try:
            return owner.get_submodule(name)
        except AttributeError:
            continue
    raise InputError(
        f"the model has no layer {name!r}; try {', '.join(_some_names(network, name))}"
    )


def _some_names(network: nn.Module, wrong: str, limit: int = 5) -> list[str]:
    """Close matches to ``wrong``, else the feature stages, else the top-level children."""
    names = [n for n, _ in network.named_modules() if n]
    close = difflib.get_close_matches(wrong, names, n=limit, cutoff=0.6) if wrong else []
    if close:
        return close
    info = getattr(network, "feature_info", None) or []
    stages = [
        str(e["module"]) for e in info if isinstance(e, dict) and str(e.get("module")) in names
    ]
    if stages:
        return stages[-limit:]
    return [n for n, _ in network.named_children()][:limit]


def _reshape_for(network: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if _is_vit(network):
        grid = network.patch_embed.grid_size  # type: ignore[union-attr]
        prefix = int(network.num_prefix_tokens)  # type: ignore[arg-type]
        return TokenGrid(int(grid[0]), int(grid[1]), prefix)  # type: ignore[index]
    if str(getattr(network, "output_fmt", "NCHW")) == "NHWC":
        return channels_first
    return None


# -- computing maps --------------------------------------------------------------------------
@dataclass(frozen=True)
class CamResult:
    """Maps (B, H, W), or (B, V, H, W) for places, float32 in [0, 1], one per image.

    ``all_zero`` (same leading shape) marks maps that carried no heat; they are zeros and
    must be reported as such. ``targets`` (B,) are the classes explained; ``probabilities``
    (B, K) the model's softmax output for the same input.
    """

    maps: np.ndarray
    all_zero: np.ndarray
    targets: np.ndarray
    probabilities: np.ndarray


def compute_cams(
    model: nn.Module,
    images: torch.Tensor,
    targets: Sequence[int] | None = None,
    method: str = "gradcam",
    layer: str | None = None,
) -> CamResult:
    """One class activation map per image of ``images`` (B, 3, H, W), at the input's size.

    ``images`` are the model's input (preprocessed, normalised); for a multi-view model
    they may also be places (B, V, 3, H, W). ``targets`` are the classes to explain, one
    per image; None explains each image's predicted class. Works inside ``torch.no_grad``
    and ``torch.inference_mode``; leaves the model's modes and gradients as it found them.
    """
    import torch

    table = _methods()
    if method not in table:
        close = difflib.get_close_matches(method, METHOD_NAMES, n=1)
        hint = f"did you mean {close[0]}?" if close else f"choose one of {', '.join(table)}"
        raise InputError(f"unknown CAM method {method!r}; {hint}")
    model = _unwrap(model)
    explained, places = _explained(model, images)
    if places and method == "scorecam":
        raise InputError("scorecam explains single views only; pass images (B, 3, H, W)")
    count = int(images.shape[0])
    wanted = _check_targets(targets, count, _num_classes(model))
    layer_module, reshape = target_layer(model, layer, min(images.shape[-2:]))

    modes = [(module, module.training) for module in explained.modules()]
    params = list(explained.parameters())
    saved = [(p, p.requires_grad, p.grad) for p in params]
    try:
        with torch.inference_mode(False), torch.enable_grad():
            # A clone made here is an ordinary tensor even if ``images`` is an inference one.
            batch = images.detach().clone()
            if places:
                batch = batch.flatten(0, 1)
            batch.requires_grad_(True)
            for p in params:
                p.requires_grad_(False)
            cam_targets = None
            if wanted is not None:
                from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

                cam_targets = [ClassifierOutputTarget(int(t)) for t in wanted]
            checked = _FeatureMap(reshape, _layer_name(model, layer, layer_module))
            with _hooked(table[method], explained, layer_module, checked) as cam:
                try:
                    maps = cam(input_tensor=batch, targets=cam_targets)
                except (AttributeError, TypeError) as exc:
                    # pytorch-grad-cam reads None for what the layer never recorded
                    _explain_missing(cam, checked.name, exc)
                    raise
                outputs = cam.outputs.detach().float()
            del cam  # and with it the autograd graph it kept
    finally:
        for p, requires_grad, grad in saved:
            p.requires_grad_(requires_grad)
            p.grad = grad
        for module, training in modes:
            module.training = training

    maps = np.asarray(maps, dtype=np.float32)
    maps = np.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0)
    peaks = maps.reshape(maps.shape[0], -1).max(axis=1) if maps.size else np.zeros(0)
    all_zero = peaks < EMPTY_PEAK
    maps[all_zero] = 0.0
    maps = np.clip(maps, 0.0, 1.0)
    if places:
        views = int(images.shape[1])
        maps = maps.reshape(count, views, *maps.shape[1:])
        all_zero = all_zero.reshape(count, views)
    probabilities = torch.softmax(outputs, dim=1).cpu().numpy().astype(np.float32)
    explained_targets = (
        np.asarray(wanted, dtype=np.int64)
        if wanted is not None
        else probabilities.argmax(axis=1).astype(np.int64)
    )
    return CamResult(maps, all_zero, explained_targets, probabilities)


@contextlib.contextmanager
def _hooked(
    method: type,
    model: nn.Module,
    layer: nn.Module,
    reshape: Callable[[torch.Tensor], torch.Tensor] | None,
) -> Iterator[Any]:
    """The method's CAM object with its hooks, released however the block ends.

    Not the object's own ``with``: its ``__exit__`` prints and swallows IndexError.
    """
    cam = method(model=model, target_layers=[layer], reshape_transform=reshape)
    try:
        yield cam
    finally:
        cam.activations_and_grads.release()


def _layer_name(model: nn.Module, layer: str | None, module: nn.Module) -> str:
    if layer is None:
        found = (name for name, m in model.named_modules() if m is module)
        layer = next(found, None)
    return f"layer {layer!r}" if layer else "the target layer"


@dataclass(frozen=True)
class _FeatureMap:
    """The layer's reshape transform, checking that a feature map (B, C, h, w) comes out:
    one clear line instead of pytorch-grad-cam's errors about tuples and shapes."""

    transform: Callable[[torch.Tensor], torch.Tensor] | None
    name: str

    def __call__(self, output: Any) -> torch.Tensor:
        if not hasattr(output, "ndim"):
            raise InputError(
                f"{self.name} gives a {type(output).__name__}, not a feature map; "
                "name another layer"
            )
        mapped = output if self.transform is None else self.transform(output)
        if mapped.ndim != 4:
            raise InputError(
                f"{self.name} gives {tuple(output.shape)}, not a feature map "
                "(batch, channels, height, width); name another layer"
            )
        return mapped


def _explain_missing(cam: Any, named: str, exc: Exception) -> None:
    """Raise a clear InputError when the layer saw no forward pass or no gradient."""
    recorded = cam.activations_and_grads
    if not recorded.activations:
        raise InputError(
            f"{named} is never run by the model's forward pass (a container?); name a layer that is"
        ) from exc
    if cam.uses_gradients and not recorded.gradients:
        raise InputError(
            f"no gradient reaches {named} from the model's output; name another layer"
        ) from exc


def _explained(model: nn.Module, images: torch.Tensor) -> tuple[nn.Module, bool]:
    """The module the CAM runs and whether ``images`` are multi-view places."""
    import torch

    from geotag.train.model import MultiViewClassifier

    if not isinstance(images, torch.Tensor):
        raise InputError(f"images must be a tensor, got {type(images).__name__}")
    if isinstance(model, MultiViewClassifier):
        if images.ndim == 5 and images.shape[1] == model.views and images.shape[0] > 0:
            return _wrappers()[1](model), True
        if images.ndim == 4 and images.shape[0] > 0:
            return _wrappers()[0](model), False
        raise InputError(
            f"a {model.views}-view model explains images (B, 3, H, W) or places "
            f"(B, {model.views}, 3, H, W); got {tuple(images.shape)}"
        )
    if images.ndim != 4 or images.shape[0] == 0:
        raise InputError(f"images must be a batch (B, 3, H, W); got {tuple(images.shape)}")
    return model, False


@functools.cache
def _wrappers() -> tuple[type, type]:
    """(one view as a whole place, places as a flat batch of views), built on first use."""
    from torch import nn

    from geotag.train.model import MultiViewClassifier

    class OneView(nn.Module):
        def __init__(self, model: MultiViewClassifier) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.model.backbone(x)
            seen = features[:, None].expand(-1, self.model.views, -1)
            return self.model.forward_head(self.model.fuse(seen))

    class Places(nn.Module):
        def __init__(self, model: MultiViewClassifier) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.model(x.unflatten(0, (-1, self.model.views)))
            return out

    return OneView, Places


def _num_classes(model: nn.Module) -> int | None:
    value = getattr(model, "num_classes", None)
    return value if isinstance(value, int) and value > 0 else None


def _check_targets(
    targets: Sequence[int] | None, count: int, classes: int | None
) -> list[int] | None:
    if targets is None:
        return None
    wanted = [int(t) for t in targets]
    if len(wanted) != count:
        raise InputError(f"got {len(wanted)} targets for {count} images; give one per image")
    if classes is not None:
        bad = [t for t in wanted if not 0 <= t < classes]
        if bad:
            raise InputError(
                f"target class {bad[0]} is outside the model's {classes} classes (0-{classes - 1})"
            )
    return wanted
