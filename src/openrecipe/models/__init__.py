"""Model references, loading, and generation."""

from openrecipe.models.refs import ModelRef, resolve_model_ref

__all__ = ["ModelRef", "resolve_model_ref"]
