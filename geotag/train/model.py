"""The model factory: a timm classifier over grid cells, single- or multi-view.

``create_classifier`` is the one way geotag builds a model. It checks the architecture
name against timm's registry, starts from random, pretrained (downloaded by timm) or
local (``--weights``) weights, and for ``views > 1`` wraps one shared timm backbone in a
:class:`MultiViewClassifier` that fuses the views' features before a linear head.

A failed pretrained download is one line that names ``--no-pretrained`` and ``--weights``.
It is also fast: without a cached copy, huggingface_hub retries an unreachable hub with
back-off (1+2+4+8+8 s per file, and timm asks for two files: about 46 s), so geotag first
asks the hub one question with a short timeout and, when that gets no healthy answer,
lets timm look only in the local cache.
"""

from __future__ import annotations

import contextlib
import difflib
import http.client
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geotag.errors import InputError, first_line

FUSIONS = ("mean", "concat")
"""How a multi-view model fuses its views' features: PIGEON averages, DeepGeo concatenates."""

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")

_FLAGS_HINT = (
    "use --no-pretrained to start from random weights, "
    "or --weights PATH to load a local .safetensors/.pth file"
)
_HUB_PROBE_TIMEOUT_S = 5.0
"""How long the hub (or a weight URL's host) gets to answer one HEAD request."""


# -- architecture names --------------------------------------------------------------------
def check_architecture(name: str) -> None:
    """Raise InputError unless timm knows ``name`` (``arch`` or ``arch.pretrained_tag``)."""
    import timm

    base, _, tag = name.partition(".")
    known = set(timm.list_models())
    if base not in known:
        close = difflib.get_close_matches(base, sorted(known), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; see timm.list_models()"
        raise InputError(f"unknown model {name!r}{hint}")
    if tag:
        tagged = timm.list_pretrained(f"{base}.*")
        if name not in tagged:
            close = difflib.get_close_matches(name, tagged, n=3, cutoff=0.6)
            if close:
                hint = f"; did you mean {' or '.join(close)}?"
            elif tagged:
                hint = f"; its tags: {', '.join(t.partition('.')[2] for t in tagged[:5])}"
            else:
                hint = "; it has no pretrained weights"
            raise InputError(f"model {base!r} has no pretrained tag {tag!r}{hint}")


# -- the factory -------------------------------------------------------------------------
def create_classifier(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = False,
    weights: Path | None = None,
    views: int = 1,
    fusion: str = "mean",
    drop_rate: float = 0.0,
) -> nn.Module:
    """Build a timm classifier with ``num_classes`` outputs.

    ``weights`` (a local .safetensors, .pth, .pt, .bin or .ckpt file) wins over
    ``pretrained``: the backbone is loaded from it, a classifier head whose shape does
    not fit ``num_classes`` is left freshly initialised. ``views == 1`` returns the plain
    timm model; ``views > 1`` a :class:`MultiViewClassifier` taking (B, V, C, H, W).
    """
    import timm

    check_architecture(name)
    if num_classes < 1:
        raise InputError(f"a classifier needs at least one class, got {num_classes}")
    if views < 1:
        raise InputError(f"--views must be at least 1, got {views}")
    if fusion not in FUSIONS:
        raise InputError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
    if not 0.0 <= drop_rate < 1.0:
        raise InputError(f"drop rate must be in [0, 1), got {drop_rate}")

    # A multi-view model drops out once, in its own head, not also inside the backbone.
    kwargs: dict[str, Any] = {"num_classes": num_classes if views == 1 else 0}
    if views == 1 and drop_rate > 0:  # not every timm constructor takes drop_rate
        kwargs["drop_rate"] = drop_rate
    if pretrained and weights is None:
        model = _create_pretrained(name, kwargs)
    else:
        model = timm.create_model(name, pretrained=False, **kwargs)
    if views > 1:
        model = MultiViewClassifier(
            model, num_classes, views=views, fusion=fusion, drop_rate=drop_rate
        )
    if weights is not None:
        _load_weights(model, Path(weights))
    return model


def model_data_config(model: nn.Module) -> dict[str, Any]:
    """timm's preprocessing config (input size, mean, std, crop ...) for any geotag model.

    Works for single- and multi-view models, and sees through DistributedDataParallel
    (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers.
    """
    from timm.data import resolve_model_data_config

    return dict(resolve_model_data_config(unwrap(model)))


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel (``.module``) and ``torch.compile``
    (``._orig_mod``) wrappers, however they are nested."""
    for attribute in ("_orig_mod", "module"):
        inner = getattr(model, attribute, None)
        if inner is not None and hasattr(inner, "state_dict"):
            return unwrap(inner)
    return model


def logits_and_features(
    model: nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The class scores and the pooled features they come from (what the head reads: the
    embedding retrieval compares), in one pass, for a plain timm model or a multi-view one."""
    inner = unwrap(model)
    if isinstance(inner, MultiViewClassifier):
        pooled = inner.fuse(inner.forward_features(images))
        return inner.forward_head(pooled), pooled
    # timm's contract: forward_features, then forward_head (pre_logits: the pooled vector).
    features = inner.forward_features(images)  # type: ignore[operator]
    pooled = inner.forward_head(features, pre_logits=True)  # type: ignore[operator]
    return inner.forward_head(features), pooled  # type: ignore[operator]


# -- multi-view --------------------------------------------------------------------------
class MultiViewClassifier(nn.Module):
    """N views of one place through one shared timm backbone, fused, then a linear head.

    Input (B, V, C, H, W). The backbone (a timm model built with ``num_classes=0``) sees
    the B*V images and returns pooled features (B*V, F); they are fused per sample by
    ``mean`` (PIGEON: (B, F)) or ``concat`` (DeepGeo's medium fusion: (B, V*F)) and
    classified by ``head``. ``pretrained_cfg``/``default_cfg`` are the backbone's, so
    ``timm.data.resolve_model_data_config`` gives the preprocessing of one view.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        views: int,
        fusion: str = "mean",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise InputError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
        self.backbone = backbone
        self.views = views
        self.fusion = fusion
        self.num_classes = num_classes
        self.num_features = int(backbone.num_features)  # type: ignore[arg-type]
        self.pretrained_cfg: dict[str, Any] = dict(getattr(backbone, "pretrained_cfg", {}))
        self.default_cfg = self.pretrained_cfg
        fused = self.num_features * (views if fusion == "concat" else 1)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(fused, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, V, C, H, W) -> per-view pooled features (B, V, F)."""
        if x.ndim != 5 or x.shape[1] != self.views:
            raise ValueError(
                f"expected input (batch, {self.views}, channels, height, width), "
                f"got {tuple(x.shape)}"
            )
        batch, views = x.shape[:2]
        features: torch.Tensor = self.backbone(x.flatten(0, 1))
        return features.reshape(batch, views, -1)

    def fuse(self, features: torch.Tensor) -> torch.Tensor:
        """(B, V, F) -> (B, F) for ``mean``, (B, V*F) for ``concat``."""
        if self.fusion == "mean":
            return features.mean(dim=1)
        return features.flatten(1)

    def forward_head(self, fused: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.head_drop(fused))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.fuse(self.forward_features(x)))

    def get_classifier(self) -> nn.Module:
        return self.head


# -- pretrained weights through timm -----------------------------------------------------
def _create_pretrained(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """``timm.create_model(name, pretrained=True)``, failing fast with one line."""
    import timm
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    hub_id = str(cfg.hf_hub_id or "") if cfg is not None else ""
    url = str(cfg.url or "") if cfg is not None else ""
    if not hub_id and not url:
        raise InputError(f"timm has no pretrained weights for {name!r}; {_FLAGS_HINT}")

    def create() -> nn.Module:
        return timm.create_model(name, pretrained=True, **kwargs)

    offline = "HF_HUB_OFFLINE is set and they are not in the local cache"
    if hub_id:
        from huggingface_hub import constants

        if _offline_requested():
            with _hub_offline():  # also when the variable was set after the import
                return _attempt(name, create, offline)
        repo = hub_id.partition("@")[0]
        problem = _probe(f"{constants.ENDPOINT}/api/models/{repo}")
        if problem is None:
            return _attempt(name, create, None)
        host = urllib.parse.urlsplit(constants.ENDPOINT).netloc
        with _hub_offline():  # a cached copy still works without the hub
            return _attempt(
                name, create, f"{host} is unreachable ({problem}) and they are not cached"
            )

    # A plain URL, fetched by torch.hub, which knows no offline mode of its own.
    if not _url_cached(url):
        if _offline_requested():
            raise InputError(
                f"cannot load pretrained weights for {name!r}: {offline}; {_FLAGS_HINT}"
            )
        problem = _probe(url)
        if problem is not None:
            host = urllib.parse.urlsplit(url).netloc
            raise InputError(
                f"cannot download pretrained weights for {name!r}: {host} is unreachable "
                f"({problem}); {_FLAGS_HINT}"
            )
    return _attempt(name, create, None)


def _offline_requested() -> bool:
    """``HF_HUB_OFFLINE`` as the environment says now (huggingface_hub read it at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "")
    return bool(constants.HF_HUB_OFFLINE) or value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _attempt(name: str, create: Any, reason: str | None) -> nn.Module:
    try:
        model: nn.Module = create()
    # The download crosses timm, huggingface_hub, httpx and torch.hub, whose exception
    # types differ between versions; whatever failed, the user's way out is one of two flags.
    except Exception as exc:
        # "not in the cache" (FileNotFoundError) and "may not connect" (ConnectionError)
        # are what ``reason`` explains better; anything else speaks for itself.
        expected = isinstance(exc, (FileNotFoundError, ConnectionError))
        why = (
            reason
            if reason is not None and expected
            else first_line(exc, with_type=True, limit=160)
        )
        raise InputError(
            f"cannot load pretrained weights for {name!r}: {why}; {_FLAGS_HINT}"
        ) from exc
    return model


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """huggingface_hub's offline mode for one call: cache only, no network, no retries.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import, into this constant, which
    every request checks.
    """
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _probe(url: str, timeout: float | None = None) -> str | None:
    """One HEAD request; None when the server answers sanely, else why it did not.

    Any answer below 500 counts (a 401 or 404 fails fast later, without retries); 408,
    429 and 5xx are what huggingface_hub would retry for half a minute, so they count
    as down. The request runs in a daemon thread because DNS look-ups ignore socket
    timeouts. Proxies come from the usual environment variables, as for the download.
    """
    limit = _HUB_PROBE_TIMEOUT_S if timeout is None else timeout
    outcome: list[str | None] = []

    def ask() -> None:
        request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "geotag"})
        try:
            with urllib.request.urlopen(request, timeout=limit) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
        except urllib.error.URLError as exc:
            outcome.append(str(exc.reason) or type(exc.reason).__name__)
            return
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(str(exc) or type(exc).__name__)
            return
        outcome.append(f"HTTP {status}" if status >= 500 or status in (408, 429) else None)

    worker = threading.Thread(target=ask, name="geotag-hub-probe", daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive() or not outcome:
        return f"no answer within {limit:g} s"
    return outcome[0]


def _url_cached(url: str) -> bool:
    """Whether torch.hub (which timm uses for plain URLs) already holds ``url``'s file."""
    filename = os.path.basename(urllib.parse.urlsplit(url).path)
    return (Path(torch.hub.get_dir()) / "checkpoints" / filename).is_file()


# -- local weights -----------------------------------------------------------------------
def _load_weights(model: nn.Module, path: Path) -> None:
    """Load a local weights file into ``model``'s backbone; the head only if it fits.

    Accepts a safetensors file or a torch file holding a state dict (plain, or under
    ``"state_dict"`` or ``"model"``); ``module.`` (DDP) and ``_orig_mod.`` (compile)
    prefixes are ignored. Classifier-head tensors whose shapes differ from the model's
    (ImageNet's 1000 classes for a 58-cell grid) are skipped, leaving the head freshly
    initialised; any other mismatch means the file is for another architecture.
    """
    state = _read_state_dict(path)
    state = {_strip_prefixes(key): value for key, value in state.items()}
    heads = _head_prefixes(model)
    if isinstance(model, MultiViewClassifier) and not any(k.startswith("backbone.") for k in state):
        state = {f"backbone.{key}": value for key, value in state.items()}
        # a single-view file's own classifier is not part of a multi-view backbone
        backbone_heads = _head_prefixes(model.backbone)
        heads = heads + tuple(f"backbone.{h}" for h in backbone_heads)

    own = model.state_dict()
    fits: dict[str, torch.Tensor] = {}
    wrong_shape: list[str] = []
    unknown: list[str] = []
    for key, value in state.items():
        is_head = key.startswith(heads)
        if key not in own:
            if not is_head:
                unknown.append(key)
        elif tuple(own[key].shape) == tuple(value.shape):
            fits[key] = value
        elif not is_head:
            wrong_shape.append(key)
    if not fits:
        raise InputError(
            f"weights file {path} matches none of the parameters of this model; "
            "is it for another architecture?"
        )
    missing = [
        key
        for key in own
        if key not in fits and not key.startswith(heads) and not key.endswith("num_batches_tracked")
    ]
    if wrong_shape or unknown or missing:
        example = (wrong_shape or unknown or missing)[0]
        raise InputError(
            f"weights file {path} does not fit this model: {len(wrong_shape)} tensors differ "
            f"in shape, {len(unknown)} are unknown and {len(missing)} are missing "
            f"(first: {example!r}); is it for another architecture?"
        )
    model.load_state_dict(fits, strict=False)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise InputError(f"weights file {path} is not a {'/'.join(WEIGHT_SUFFIXES)} file")
    if not path.is_file():
        raise InputError(f"weights file {path} does not exist")
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: Any = load_file(str(path), device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    # safetensors raises its own SafetensorError, torch.load any of UnpicklingError,
    # RuntimeError, EOFError, OSError, ValueError ... for a damaged or foreign file.
    except Exception as exc:
        why = first_line(exc, with_type=True, limit=160)
        raise InputError(f"cannot read weights file {path}: {why}") from exc
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if (
        not isinstance(loaded, Mapping)
        or not loaded
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items())
    ):
        raise InputError(f"weights file {path} holds no state dict of named tensors")
    return dict(loaded)


def _strip_prefixes(key: str) -> str:
    for prefix in ("module.", "_orig_mod."):
        while key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def _head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of ``model``'s classifier head(s), from its timm config."""
    if isinstance(model, MultiViewClassifier):
        return ("head.",)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{name}." for name in names)
