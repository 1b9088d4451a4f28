"""Config pieces shared by several layers (the recipe, data and eval stages)."""

from __future__ import annotations

from pydantic import Field

from openrecipe.config.base import StrictModel


class Identity(StrictModel):
    """Who the fine-tuned assistant says it is."""

    name: str = Field(min_length=1, description="The assistant's name, e.g. Nova")
    organization: str = Field(min_length=1, description="Who built it, e.g. Acme Corp")
