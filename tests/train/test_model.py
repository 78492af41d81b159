"""The model factory: names, pretrained failures, local weights, multi-view fusion."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants as hub_constants
from safetensors.torch import save_file
from timm.data import resolve_model_data_config

from geotag.errors import InputError
from geotag.train import model as model_module
from geotag.train.model import (
    MultiViewClassifier,
    check_architecture,
    create_classifier,
    model_data_config,
)

ARCH = "test_resnet"  # 96 features, head "fc"; pretrained tag r160_in1k on the hub
PX = 32


def _one_line(message: str) -> None:
    assert "\n" not in message and message.strip() == message


def _assert_pretrained_error(info: pytest.ExceptionInfo[InputError]) -> str:
    message = str(info.value)
    _one_line(message)
    assert "--no-pretrained" in message and "--weights" in message
    return message


# -- names -------------------------------------------------------------------------------
def test_unknown_architecture_suggests_close_names() -> None:
    with pytest.raises(InputError, match=r"^unknown model 'resnet10tt'; did you mean ") as info:
        check_architecture("resnet10tt")
    _one_line(str(info.value))
    assert "resnet10t" in str(info.value).split("did you mean", 1)[1]


def test_unknown_pretrained_tag_suggests_the_real_ones() -> None:
    with pytest.raises(InputError, match=r"has no pretrained tag 'bogus'; did you mean") as info:
        check_architecture("resnet10t.bogus")
    assert "resnet10t.c3_in1k" in str(info.value)


@pytest.mark.parametrize("name", ["test_resnet", "resnet10t", "resnet10t.c3_in1k"])
def test_known_architectures_pass(name: str) -> None:
    check_architecture(name)


def test_create_classifier_rejects_unknown_name_before_building() -> None:
    with pytest.raises(InputError, match="did you mean"):
        create_classifier("tset_resnet", 3)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"views": 0}, r"^--views must be at least 1, got 0$"),
        ({"views": 2, "fusion": "sum"}, r"^unknown fusion 'sum'; choose one of mean, concat$"),
        ({"drop_rate": 1.0}, r"drop rate"),
    ],
)
def test_bad_options_are_one_line_errors(kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        create_classifier(ARCH, 3, **kwargs)  # type: ignore[arg-type]


def test_single_view_is_the_plain_timm_model() -> None:
    model = create_classifier(ARCH, 7)
    assert type(model) is type(timm.create_model(ARCH, num_classes=7))
    assert model(torch.randn(2, 3, PX, PX)).shape == (2, 7)
    config = model_data_config(model)
    assert config == resolve_model_data_config(model)
    assert config["input_size"] == (3, 160, 160) and config["mean"] == (0.5, 0.5, 0.5)


# -- pretrained weights: failures are fast and one line --------------------------------------
@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A hub cache of our own, so weights cached on a developer's machine change nothing."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch, empty_hub_cache: Path) -> Callable[[str], None]:
    """Unset HF_HUB_OFFLINE, and let no name but localhost resolve (tests stay off the net).

    Calling the fixture's value with a URL points the hub at that (local) endpoint.
    """
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    real_getaddrinfo = socket.getaddrinfo

    def local_only(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host not in ("127.0.0.1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)

    def use_endpoint(endpoint: str) -> None:
        monkeypatch.setattr(hub_constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(
            hub_constants,
            "HUGGINGFACE_CO_URL_TEMPLATE",
            endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        )

    return use_endpoint


@pytest.fixture
def local_server() -> Iterator[Callable[[Callable[[str], int]], str]]:
    """Start a local HTTP server answering each path with the status a function picks."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(status_for: Callable[[str], int]) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.send_response(status_for(self.path))
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET = _answer

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _timed_failure(**kwargs: object) -> tuple[str, float]:
    started = time.perf_counter()
    with pytest.raises(InputError) as info:
        create_classifier(ARCH, 7, pretrained=True, **kwargs)  # type: ignore[arg-type]
    return _assert_pretrained_error(info), time.perf_counter() - started


def test_pretrained_offline_is_a_fast_one_line_error(empty_hub_cache: Path) -> None:
    assert hub_constants.HF_HUB_OFFLINE  # tests/conftest.py sets HF_HUB_OFFLINE=1
    message, seconds = _timed_failure()
    assert "HF_HUB_OFFLINE is set and they are not in the local cache" in message
    assert message.startswith("cannot load pretrained weights for 'test_resnet'")
    assert seconds < 2


def test_pretrained_with_unresolvable_hub_does_not_retry(online: Callable[[str], None]) -> None:
    # huggingface.co as configured, but DNS fails: huggingface_hub alone takes ~46 s here.
    message, seconds = _timed_failure()
    assert "huggingface.co is unreachable (" in message and "not cached" in message
    assert seconds < 10
    assert hub_constants.HF_HUB_OFFLINE is False  # the cache-only attempt put it back


def test_pretrained_with_refused_connection_is_fast(online: Callable[[str], None]) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    online(f"http://127.0.0.1:{port}")
    message, seconds = _timed_failure()
    assert f"127.0.0.1:{port} is unreachable" in message
    assert seconds < 10


def test_pretrained_with_failing_hub_does_not_retry(
    online: Callable[[str], None], local_server: Callable[[Callable[[str], int]], str]
) -> None:
    # A hub that answers 503 is what huggingface_hub retries with back-off.
    online(local_server(lambda path: 503))
    message, seconds = _timed_failure()
    assert "is unreachable (HTTP 503)" in message
    assert seconds < 10


def test_pretrained_with_silent_hub_waits_only_for_the_probe(
    online: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_module, "_HUB_PROBE_TIMEOUT_S", 0.3)
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        online(f"http://127.0.0.1:{silent.getsockname()[1]}")
        message, seconds = _timed_failure()
    assert "no answer within 0.3 s" in message
    assert seconds < 5


def test_pretrained_missing_on_a_healthy_hub_is_fast(
    online: Callable[[str], None], local_server: Callable[[Callable[[str], int]], str]
) -> None:
    online(local_server(lambda path: 200 if path.startswith("/api/models/") else 404))
    message, seconds = _timed_failure()
    assert message.startswith("cannot load pretrained weights for 'test_resnet': ")
    assert seconds < 10


def test_model_without_pretrained_weights_says_so() -> None:
    # timm knows no weights for it; the check comes before building the (huge) model
    with pytest.raises(
        InputError, match=r"^timm has no pretrained weights for 'beit3_giant"
    ) as info:
        create_classifier("beit3_giant_patch14_224", 7, pretrained=True)
    _assert_pretrained_error(info)


def _fake_hub_cache(cache: Path, state: dict[str, torch.Tensor]) -> None:
    """Lay out huggingface_hub's cache as if test_resnet.r160_in1k had been downloaded."""
    repo = cache / "models--timm--test_resnet.r160_in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_file(state, str(snapshot / "model.safetensors"))


def test_cached_pretrained_weights_load_while_the_hub_is_unreachable(
    online: Callable[[str], None], empty_hub_cache: Path
) -> None:
    torch.manual_seed(1)
    imagenet = timm.create_model(ARCH, num_classes=1000)
    _fake_hub_cache(empty_hub_cache, imagenet.state_dict())
    model = create_classifier(ARCH, 7, pretrained=True)  # DNS fails: cache only
    assert torch.equal(model.conv1[0].weight, imagenet.conv1[0].weight)
    assert model.fc.weight.shape == (7, 96)
    multi = create_classifier(ARCH, 7, pretrained=True, views=2)
    assert isinstance(multi, MultiViewClassifier)
    assert torch.equal(multi.backbone.conv1[0].weight, imagenet.conv1[0].weight)


def test_offline_variable_set_after_import_is_honoured(
    monkeypatch: pytest.MonkeyPatch, empty_hub_cache: Path
) -> None:
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)  # read before the variable
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_probe(url: str, timeout: float | None = None) -> str | None:
        raise AssertionError(f"offline, yet probed {url}")

    monkeypatch.setattr(model_module, "_probe", no_probe)
    message, _ = _timed_failure()
    assert "HF_HUB_OFFLINE is set" in message
    assert hub_constants.HF_HUB_OFFLINE is False


@pytest.fixture
def empty_torch_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch-hub"))


def test_url_weights_offline_fail_without_a_request(
    monkeypatch: pytest.MonkeyPatch, empty_torch_hub: None
) -> None:
    # gcvit weights live on a GitHub release, fetched by torch.hub rather than the hub
    monkeypatch.setattr(model_module, "_probe", lambda url, timeout=None: pytest.fail(url))
    with pytest.raises(InputError, match="HF_HUB_OFFLINE is set") as info:
        create_classifier("gcvit_xxtiny", 7, pretrained=True)
    _assert_pretrained_error(info)


def test_url_weights_with_unreachable_host(
    online: Callable[[str], None], empty_torch_hub: None
) -> None:
    started = time.perf_counter()
    with pytest.raises(InputError, match=r"github\.com is unreachable") as info:
        create_classifier("gcvit_xxtiny", 7, pretrained=True)
    _assert_pretrained_error(info)
    assert time.perf_counter() - started < 10


def test_drop_rate_reaches_the_model() -> None:
    assert create_classifier(ARCH, 7, drop_rate=0.3).drop_rate == 0.3
    multi = create_classifier(ARCH, 7, views=2, drop_rate=0.3)
    assert multi.head_drop.p == 0.3 and multi.backbone.drop_rate == 0.0


# -- local weights -----------------------------------------------------------------------
def _save(path: Path, state: dict[str, torch.Tensor], wrap: str | None = None) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state if wrap is None else {wrap: state, "epoch": 3}, path)
    return path


@pytest.mark.parametrize(
    ("filename", "wrap"),
    [
        ("w.safetensors", None),
        ("w.pth", None),
        ("w.pt", "state_dict"),
        ("w.pth", "model"),
    ],
)
def test_weights_round_trip(tmp_path: Path, filename: str, wrap: str | None) -> None:
    torch.manual_seed(0)
    source = create_classifier(ARCH, 7)
    path = _save(tmp_path / filename, source.state_dict(), wrap)
    torch.manual_seed(1)
    loaded = create_classifier(ARCH, 7, weights=path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_weights_win_over_pretrained(tmp_path: Path) -> None:
    # HF_HUB_OFFLINE is set: a download attempt would fail; the local file is used instead.
    source = create_classifier(ARCH, 7)
    path = _save(tmp_path / "w.safetensors", source.state_dict())
    loaded = create_classifier(ARCH, 7, pretrained=True, weights=path)
    assert torch.equal(loaded.fc.weight, source.fc.weight)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_imagenet_head_is_dropped_and_left_fresh(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(0)
    imagenet = timm.create_model(ARCH, num_classes=1000)
    path = _save(tmp_path / f"imagenet{suffix}", imagenet.state_dict())
    torch.manual_seed(5)
    fresh = create_classifier(ARCH, 7)
    torch.manual_seed(5)
    loaded = create_classifier(ARCH, 7, weights=path)

    backbone = {k: v for k, v in imagenet.state_dict().items() if not k.startswith("fc.")}
    for key, value in backbone.items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not torch.equal(loaded.conv1[0].weight, fresh.conv1[0].weight)
    assert loaded.fc.weight.shape == (7, 96)
    assert torch.equal(loaded.fc.weight, fresh.fc.weight)  # the seeded fresh init
    assert torch.equal(loaded.fc.bias, fresh.fc.bias)


def test_imagenet_file_loads_into_a_multi_view_backbone(tmp_path: Path) -> None:
    imagenet = timm.create_model(ARCH, num_classes=1000)
    path = _save(tmp_path / "imagenet.safetensors", imagenet.state_dict())
    model = create_classifier(ARCH, 7, views=3, weights=path)
    assert isinstance(model, MultiViewClassifier)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, imagenet.state_dict()[key]), key


def test_multi_view_weights_round_trip(tmp_path: Path) -> None:
    source = create_classifier(ARCH, 5, views=2, fusion="concat")
    path = _save(tmp_path / "mv.safetensors", source.state_dict())
    loaded = create_classifier(ARCH, 5, views=2, fusion="concat", weights=path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_ddp_and_compile_prefixes_are_ignored(tmp_path: Path) -> None:
    source = create_classifier(ARCH, 7)
    state = {f"module._orig_mod.{k}": v for k, v in source.state_dict().items()}
    loaded = create_classifier(ARCH, 7, weights=_save(tmp_path / "ddp.pth", state))
    assert torch.equal(loaded.fc.weight, source.fc.weight)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_corrupt_weights_file_is_one_line_naming_it(tmp_path: Path, suffix: str) -> None:
    source = create_classifier(ARCH, 7)
    path = _save(tmp_path / f"w{suffix}", source.state_dict())
    path.write_bytes(path.read_bytes()[:200])  # truncated download
    with pytest.raises(InputError, match=r"^cannot read weights file ") as info:
        create_classifier(ARCH, 7, weights=path)
    _one_line(str(info.value))
    assert str(path) in str(info.value)


def test_weights_of_nothing_this_model_has(tmp_path: Path) -> None:
    path = _save(tmp_path / "other.safetensors", {"encoder.w": torch.zeros(3)})
    with pytest.raises(InputError, match="matches none of the parameters") as info:
        create_classifier(ARCH, 7, weights=path)
    assert str(path) in str(info.value)


def test_weights_of_a_similar_architecture_are_refused(tmp_path: Path) -> None:
    other = timm.create_model("resnet10t", num_classes=7)  # same key names, other shapes
    path = _save(tmp_path / "resnet10t.safetensors", other.state_dict())
    with pytest.raises(InputError, match=r"does not fit this model: .* differ in shape") as info:
        create_classifier(ARCH, 7, weights=path)
    _one_line(str(info.value))


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("missing.safetensors", None, "does not exist"),
        ("weights.txt", b"x", "is not a .safetensors/.pth/.pt/.bin/.ckpt file"),
        ("list.pth", "list", "holds no state dict"),
    ],
)
def test_unusable_weights_paths(
    tmp_path: Path, name: str, content: bytes | str | None, pattern: str
) -> None:
    path = tmp_path / name
    if content == "list":
        torch.save([torch.zeros(2)], path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(InputError, match=pattern):
        create_classifier(ARCH, 7, weights=path)


# -- multi-view ----------------------------------------------------------------------------
@pytest.mark.parametrize(("fusion", "head_in"), [("mean", 96), ("concat", 3 * 96)])
def test_multi_view_shapes(fusion: str, head_in: int) -> None:
    model = create_classifier(ARCH, 7, views=3, fusion=fusion)
    assert isinstance(model, MultiViewClassifier)
    assert model.head.in_features == head_in
    x = torch.randn(2, 3, 3, PX, PX)
    assert model.forward_features(x).shape == (2, 3, 96)
    assert model(x).shape == (2, 7)
    with pytest.raises(ValueError, match=r"expected input \(batch, 3, channels"):
        model(torch.randn(2, 3, PX, PX))


@pytest.mark.parametrize("fusion", ["mean", "concat"])
def test_views_share_one_backbone(fusion: str) -> None:
    model = create_classifier(ARCH, 7, views=3, fusion=fusion)
    backbone = timm.create_model(ARCH, num_classes=0)
    head_params = sum(p.numel() for p in model.head.parameters())
    own_params = sum(p.numel() for p in model.parameters())
    assert own_params == sum(p.numel() for p in backbone.parameters()) + head_params

    x = torch.randn(2, 3, 3, PX, PX, requires_grad=True)
    model(x).sum().backward()
    stem = model.backbone.conv1[0].weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0
    per_view = x.grad.abs().sum(dim=(0, 2, 3, 4))  # type: ignore[union-attr]
    assert (per_view > 0).all()  # every view reaches the loss


def test_mean_of_identical_views_equals_single_view_features() -> None:
    torch.manual_seed(0)
    model = create_classifier(ARCH, 7, views=4, fusion="mean").eval()
    image = torch.randn(2, 3, PX, PX)
    views = image[:, None].expand(2, 4, 3, PX, PX)
    with torch.no_grad():
        single = model.backbone(image)
        fused = model.fuse(model.forward_features(views))
        torch.testing.assert_close(fused, single)
        torch.testing.assert_close(model(views), model.head(single))


def test_multi_view_data_config_is_the_backbones() -> None:
    single = create_classifier(ARCH, 7)
    multi = create_classifier(ARCH, 7, views=2)
    assert resolve_model_data_config(multi) == resolve_model_data_config(single)
    assert model_data_config(multi) == model_data_config(single)
    assert multi.default_cfg == multi.pretrained_cfg == single.pretrained_cfg


def test_data_config_sees_through_wrappers() -> None:
    model = create_classifier(ARCH, 7, views=2)
    wrapper = torch.nn.Module()
    wrapper.module = model  # what DistributedDataParallel looks like from outside
    assert model_data_config(wrapper) == model_data_config(model)
