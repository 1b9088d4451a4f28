"""Settings of `openrecipe ui`; each is also a flag."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from openrecipe.config.base import StrictModel


class UiSettings(StrictModel):
    workspace: Path = Field(description="Folder holding uploaded data, recipes, runs and the workbench's state")
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=0, le=65535)
    session_hours: float = Field(12.0, gt=0, description="Sessions expire this long after sign-in")

    @property
    def state_file(self) -> Path:
        return self.workspace / ".openrecipe-ui" / "state.sqlite3"

    @property
    def data_dir(self) -> Path:
        return self.workspace / "data"

    @property
    def recipes_dir(self) -> Path:
        return self.workspace / "recipes"

    @property
    def runs_dir(self) -> Path:
        return self.workspace / "runs"
