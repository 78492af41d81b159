"""The grid's cell shapes and the defaults of gridding and sampling, importing nothing.

``SHAPES`` is the table ``geotag grid --shape`` offers; :mod:`geotag.geo.grid` builds the
planar shapes from its ``LATTICES`` (every name here but ``h3``) and ``h3`` from Uber's H3.
The CLI reads its defaults here, so ``geotag --help`` needs no numpy or shapely.
"""

from __future__ import annotations

#: Shape name -> what it is.
SHAPES: dict[str, str] = {
    "hex": "pointy-top hexagons (the isometric grid)",
    "square": "squares",
    "triangle": "equilateral triangles",
    "h3": "Uber's H3 cells at the resolution nearest the size asked for",
}
DEFAULT_SHAPE = "hex"
DEFAULT_CELL_KM = 100.0
#: Cells with less of their area inside the region are dropped.
DEFAULT_MIN_REGION_FRACTION = 0.05
#: Points per cell when neither a count per cell nor a total is given.
DEFAULT_PER_CELL = 10
DEFAULT_SEED = 0
