"""Scoring a trained run: accuracy, great-circle error, GeoScore, and their fold statistics.

Pure functions over arrays of class probabilities and coordinates (see ``metrics``); the
``eval`` stage feeds them a model's outputs and writes what they return.
"""
