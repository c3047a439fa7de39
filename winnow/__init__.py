"""Winnow: incremental data curation for computer vision (core, orchestrator-free)."""
