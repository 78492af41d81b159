"""The offline street-view world and a server that speaks the Street View Static API."""

from __future__ import annotations

from geotag.sim.world import Panorama, World

__all__ = ["Panorama", "World"]
