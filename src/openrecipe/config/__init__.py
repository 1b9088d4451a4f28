"""Strict configuration: pydantic models, YAML with line numbers, dotted overrides."""

from openrecipe.config.base import StrictModel
from openrecipe.config.loading import apply_overrides, load_yaml_with_lines, validate_config

__all__ = ["StrictModel", "apply_overrides", "load_yaml_with_lines", "validate_config"]
