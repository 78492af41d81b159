"""Each stage as one library call over a workspace: read its inputs, compute, write files.

The CLI calls exactly one of these per command; tests call them directly.
"""
