"""Imagery providers, one class each behind :class:`~geotag.scrape.providers.base.Provider`."""
