"""Crash-safe training checkpoints: atomic, checksummed, auto-resumable."""

from openrecipe.checkpoint.manager import CheckpointManager

__all__ = ["CheckpointManager"]
