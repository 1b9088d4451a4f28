"""Serving engines; importing this package registers the built-in ones."""

from openrecipe.serve.engines import llamacpp_engine, transformers_engine, vllm_engine  # noqa: F401
from openrecipe.serve.engines.base import ENGINES

__all__ = ["ENGINES"]
