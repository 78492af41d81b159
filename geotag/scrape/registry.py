"""Provider names -> what each provider is: the ``--provider`` choices come from here.

A :class:`ProviderSpec` says everything the scrape stage needs to know about a provider
without asking its name: how to build it, where its key lives, what it costs, the terms
notice to show once per workspace, the local server to start when no ``--base-url`` is
given, and the options only it takes.

Importing this module imports no provider (and no httpx, numpy or simulator): each is
built on demand, so ``geotag --help`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from geotag.errors import InputError
from geotag.sim.defaults import DEFAULT_SEED, DEFAULT_USER_FRACTION

if TYPE_CHECKING:
    from geotag.scrape.providers.base import ImageOptions, Provider


@dataclass(frozen=True)
class ProviderOption:
    """An option only some providers take, e.g. the simulator's world seed."""

    name: str
    type: type[int] | type[float]
    default: int | float
    help: str


@dataclass(frozen=True)
class ProviderSpec:
    """What a provider is, for the scrape stage and the CLI.

    ``local_server``, when set, is called with the provider's options as keyword arguments
    and returns a context manager yielding the base URL of a server it started; the stage
    uses it when no base URL is given (and the run is not a dry run).
    """

    build: Callable[[ImageOptions, str | None, str | None, str | None], Provider]
    key_env: str | None
    licence_note: str
    #: US dollars per 1,000 images, or None when the provider is free.
    price_per_1000_usd: float | None = None
    #: Where the price comes from, shown beside it.
    price_source: str | None = None
    #: Shown once per workspace before the first real run.
    terms_notice: str | None = None
    local_server: Callable[..., AbstractContextManager[str]] | None = None
    options: tuple[ProviderOption, ...] = ()


def _google(
    options: ImageOptions, key: str | None, secret: str | None, base_url: str | None
) -> Provider:
    from geotag.scrape.providers.google import GoogleProvider

    return GoogleProvider(key, options, signing_secret=secret, base_url=base_url)


def _sim(
    options: ImageOptions, key: str | None, secret: str | None, base_url: str | None
) -> Provider:
    from geotag.scrape.providers.sim import SimProvider

    return SimProvider(key, options, signing_secret=secret, base_url=base_url)


def _sim_server(seed: int, photospheres: float) -> AbstractContextManager[str]:
    from geotag.scrape.providers.sim import local_simulator

    return local_simulator(seed, photospheres)


def _mapillary(
    options: ImageOptions, key: str | None, secret: str | None, base_url: str | None
) -> Provider:
    from geotag.scrape.providers.mapillary import MapillaryProvider

    return MapillaryProvider(key, options, base_url=base_url)


def _panoramax(
    options: ImageOptions, key: str | None, secret: str | None, base_url: str | None
) -> Provider:
    from geotag.scrape.providers.panoramax import PanoramaxProvider

    return PanoramaxProvider(options, base_url=base_url)


PROVIDERS: dict[str, ProviderSpec] = {
    "google": ProviderSpec(
        _google,
        "GOOGLE_MAPS_API_KEY",
        "Google Maps Platform Terms of Service",
        # Static Street View, first monthly volume tier (0-100,000), from Google's "Street
        # View Static API usage and billing" page as last updated 2026-02-18. Metadata is free.
        price_per_1000_usd=7.00,
        price_source="Google Maps Platform price list, Static Street View SKU, 0-100k/month, "
        "2026-02",
        terms_notice="Google's Maps Platform Terms of Service "
        "(https://cloud.google.com/maps-platform/terms) restrict storing and caching Street "
        "View images and using them outside Google's services; make sure your use is allowed "
        "before you collect a dataset.",
    ),
    "mapillary": ProviderSpec(_mapillary, "MAPILLARY_ACCESS_TOKEN", "CC BY-SA 4.0"),
    "panoramax": ProviderSpec(_panoramax, None, "per image (mostly CC-BY-SA-4.0)"),
    "sim": ProviderSpec(
        _sim,
        None,
        "simulated (free)",
        local_server=_sim_server,
        options=(
            ProviderOption("seed", int, DEFAULT_SEED, "the simulated world's seed"),
            ProviderOption(
                "photospheres",
                float,
                DEFAULT_USER_FRACTION,
                "the share of panoramas that are user-contributed photospheres, with a "
                "photographer strip",
            ),
        ),
    ),
}


def provider_spec(name: str) -> ProviderSpec:
    """The registry entry of provider ``name``; InputError naming the choices if unknown."""
    if name not in PROVIDERS:
        raise InputError(f"unknown --provider {name!r}; choose one of {', '.join(PROVIDERS)}")
    return PROVIDERS[name]


def resolve_options(name: str, given: Mapping[str, object]) -> dict[str, int | float]:
    """Provider ``name``'s options: ``given`` checked against its spec, defaults filled in.

    An option the provider does not take, or a value of the wrong type, is an InputError.
    """
    spec = provider_spec(name)
    known = {option.name: option for option in spec.options}
    for key in given:
        if key not in known:
            takes = f"it takes {', '.join(known)}" if known else "it takes none"
            raise InputError(f"the {name} provider has no option {key!r}; {takes}")
    resolved: dict[str, int | float] = {}
    for option in spec.options:
        value = given.get(option.name, option.default)
        # An int is a fine float; a bool is an int to Python, never to a user.
        accepted = (int, float) if option.type is float else (int,)
        if isinstance(value, bool) or not isinstance(value, accepted):
            raise InputError(
                f"option {option.name!r} of the {name} provider must be "
                f"{option.type.__name__}; got {value!r}"
            )
        resolved[option.name] = option.type(value)
    return resolved


def make_provider(
    name: str,
    options: ImageOptions,
    api_key: str | None = None,
    signing_secret: str | None = None,
    base_url: str | None = None,
) -> Provider:
    return provider_spec(name).build(options, api_key, signing_secret, base_url)
