"""The offline street-view world and a server that speaks the Street View Static API.

``World`` and ``Panorama`` are loaded on first use, so that importing a light submodule
(``geotag.sim.defaults``) does not pull in numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geotag.sim.world import Panorama, World

__all__ = ["Panorama", "World"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from geotag.sim import world

        return getattr(world, name)
    raise AttributeError(f"module 'geotag.sim' has no attribute {name!r}")
