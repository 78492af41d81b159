"""The provider registry: each entry describes its provider, so the stage never asks its name."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from geotag.errors import InputError
from geotag.scrape.providers.google import TERMS_URL
from geotag.scrape.registry import PROVIDERS, ProviderOption, provider_spec, resolve_options
from geotag.sim.defaults import DEFAULT_SEED, DEFAULT_USER_FRACTION

STAGE = Path(__file__).parents[2] / "geotag" / "stages" / "scrape.py"


def test_importing_the_registry_stays_light() -> None:
    # The CLI imports it for the --provider choices; `geotag --help` must stay fast.
    code = (
        "import sys, geotag.scrape.registry; "
        "print([m for m in ('httpx', 'numpy', 'shapely', 'pandas') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_google_states_its_price_and_its_terms() -> None:
    google = PROVIDERS["google"]
    assert google.key_env == "GOOGLE_MAPS_API_KEY"
    assert google.price_per_1000_usd == 7.00
    assert google.price_source is not None and "Static Street View" in google.price_source
    assert google.terms_notice is not None and TERMS_URL in google.terms_notice
    assert google.local_server is None and google.options == ()


@pytest.mark.parametrize("name", ["mapillary", "panoramax", "sim"])
def test_the_other_providers_are_free_and_need_no_notice(name: str) -> None:
    spec = PROVIDERS[name]
    assert (spec.price_per_1000_usd, spec.price_source, spec.terms_notice) == (None, None, None)


@pytest.mark.parametrize("name", ["google", "mapillary", "panoramax"])
def test_real_providers_start_no_server_and_take_no_options(name: str) -> None:
    assert PROVIDERS[name].local_server is None and PROVIDERS[name].options == ()


def test_the_simulator_declares_its_options_and_its_server() -> None:
    sim = PROVIDERS["sim"]
    assert sim.key_env is None
    assert [(o.name, o.type, o.default) for o in sim.options] == [
        ("seed", int, DEFAULT_SEED),
        ("photospheres", float, DEFAULT_USER_FRACTION),
    ]
    assert all(o.help for o in sim.options)
    assert sim.local_server is not None
    with sim.local_server(**resolve_options("sim", {})) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        answer = httpx.get(
            f"{base_url}/maps/api/streetview/metadata",
            params={"location": "47.7,14.5", "radius": "5000", "key": "any"},
        )
    assert answer.status_code == 200 and answer.json()["status"] in ("OK", "ZERO_RESULTS")
    with pytest.raises(httpx.TransportError):  # stopped on leaving the block
        httpx.get(f"{base_url}/maps/api/streetview/metadata", timeout=2)


def test_options_are_filled_with_defaults_and_typed() -> None:
    assert resolve_options("sim", {}) == {"seed": 0, "photospheres": DEFAULT_USER_FRACTION}
    resolved = resolve_options("sim", {"seed": 4, "photospheres": 1})
    assert resolved == {"seed": 4, "photospheres": 1.0}
    assert type(resolved["photospheres"]) is float  # an int is taken as a float
    assert resolve_options("google", {}) == {}


@pytest.mark.parametrize(
    ("name", "given", "message"),
    [
        ("google", {"seed": 1}, "the google provider has no option 'seed'; it takes none"),
        ("sim", {"sede": 1}, "the sim provider has no option 'sede'; it takes seed, photospheres"),
        ("sim", {"seed": False}, "option 'seed' of the sim provider must be int; got False"),
        ("nope", {}, "unknown --provider 'nope'; choose one of google, mapillary, panoramax, sim"),
    ],
)
def test_a_bad_option_or_provider_is_one_line_naming_it(
    name: str, given: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError) as raised:
        resolve_options(name, given)
    assert str(raised.value) == message
    with pytest.raises(InputError, match="unknown --provider 'nope'"):
        provider_spec("nope")


def test_provider_options_are_plain_records() -> None:
    option = ProviderOption("seed", int, 0, "a seed")
    assert (option.name, option.type, option.default, option.help) == ("seed", int, 0, "a seed")


# -- the stage asks the registry, never the name -------------------------------------------
def _names_in(node: ast.expr) -> list[str]:
    """Provider names spelled as literals in ``node``: a string, or a tuple/list/set of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if node.value in PROVIDERS else []
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [name for element in node.elts for name in _names_in(element)]
    return []


def provider_name_tests(source: str) -> list[str]:
    """Every place ``source`` compares with, matches on or looks up a provider-name literal."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            names = [n for operand in (node.left, *node.comparators) for n in _names_in(operand)]
        elif isinstance(node, ast.MatchValue):
            names = _names_in(node.value)
        elif isinstance(node, ast.Subscript):
            names = _names_in(node.slice)
        else:
            continue
        found += [f"line {node.lineno}: {name!r}" for name in names]
    return found


def test_the_name_scan_catches_what_it_should() -> None:
    source = (
        "if options.provider == 'sim': pass\n"
        "if name in ('google', 'other'): pass\n"
        "spec = PROVIDERS['panoramax']\n"
        "match name:\n"
        "    case 'mapillary': pass\n"
        "if name == f'{provider}_terms': pass\n"  # built from the name: fine
        "default = 'google'\n"  # a default is not a test
    )
    assert provider_name_tests(source) == [
        "line 1: 'sim'",
        "line 2: 'google'",
        "line 3: 'panoramax'",
        "line 5: 'mapillary'",
    ]


def test_the_scrape_stage_never_tests_a_provider_name() -> None:
    assert provider_name_tests(STAGE.read_text(encoding="utf-8")) == []
