"""Bake, verify, launch and share GPU AMIs that serve a private LLM on AWS spot capacity."""

__version__ = "0.1.0"
TOOL = "gpu-ami-bakery"
