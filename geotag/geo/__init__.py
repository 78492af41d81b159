"""Pure geometry: regions, grids of cells, point sampling, distances."""
