"""geotag: predict where an outdoor photo was taken, with models you train for your region."""

from __future__ import annotations

__version__ = "0.1.0.dev0"
