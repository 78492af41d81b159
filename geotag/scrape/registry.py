"""Provider names -> how to build them: the ``--provider`` choices come from here.

Importing this module imports no provider (and no httpx): each is built on demand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from geotag.errors import InputError

if TYPE_CHECKING:
    from geotag.scrape.providers.base import ImageOptions, Provider


@dataclass(frozen=True)
class ProviderSpec:
    """How to build a provider, and what its key is called."""

    build: Callable[[ImageOptions, str | None, str | None, str | None], Provider]
    key_env: str | None
    licence_note: str
    priced: bool = False


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
        _google, "GOOGLE_MAPS_API_KEY", "Google Maps Platform Terms of Service", priced=True
    ),
    "mapillary": ProviderSpec(_mapillary, "MAPILLARY_ACCESS_TOKEN", "CC BY-SA 4.0"),
    "panoramax": ProviderSpec(_panoramax, None, "per image (mostly CC-BY-SA-4.0)"),
    "sim": ProviderSpec(_sim, None, "simulated (free)"),
}


def make_provider(
    name: str,
    options: ImageOptions,
    api_key: str | None = None,
    signing_secret: str | None = None,
    base_url: str | None = None,
) -> Provider:
    if name not in PROVIDERS:
        raise InputError(f"unknown --provider {name!r}; choose one of {', '.join(PROVIDERS)}")
    return PROVIDERS[name].build(options, api_key, signing_secret, base_url)
