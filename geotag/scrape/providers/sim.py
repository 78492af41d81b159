"""The built-in simulator: Google's API, served by ``geotag sim serve`` or in-process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from geotag.scrape.providers.base import ImageOptions
from geotag.scrape.providers.google import GoogleProvider


class SimProvider(GoogleProvider):
    """Exactly the Google code path, against the simulator; free, so a brisker rate."""

    name = "sim"
    default_rate = 50.0
    license = "simulated by geotag sim; free to use"

    def __init__(
        self,
        api_key: str | None,
        options: ImageOptions,
        signing_secret: str | None = None,
        base_url: str | None = None,
    ) -> None:
        # A simulator started without --key accepts any key, so none is required here.
        super().__init__(api_key or "sim", options, signing_secret, base_url)


@contextlib.contextmanager
def local_simulator(seed: int, photospheres: float) -> Iterator[str]:
    """A simulator serving world ``seed`` on a loopback port for the run; yields its base URL."""
    from geotag.sim.server import SimServer
    from geotag.sim.world import World

    with SimServer(world=World(seed, user_fraction=photospheres)) as server:
        yield server.base_url
