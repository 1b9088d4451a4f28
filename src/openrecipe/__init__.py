"""openrecipe: take an open-weights LLM, make it your own, and publish how."""

__version__ = "0.1.0"
