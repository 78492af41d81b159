"""The simulated world's settings that commands offer, importing nothing heavy."""

from __future__ import annotations

#: Share of panoramas that are user-contributed photospheres (with a photographer strip).
DEFAULT_USER_FRACTION = 0.2
DEFAULT_SEED = 0
