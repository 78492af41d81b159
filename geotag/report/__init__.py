"""Plots and maps (matplotlib), shared by the stages that draw."""
