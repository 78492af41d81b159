"""Collecting street-level images: providers, rate limiting, retries, the resumable manifest."""
