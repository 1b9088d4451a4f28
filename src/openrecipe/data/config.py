"""Config of one data source, as written in a recipe or implied by CLI arguments."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from openrecipe.config.base import StrictModel

FormatName = Literal["auto", "messages", "alpaca", "sharegpt", "table", "text"]


class ColumnMap(StrictModel):
    question: str | None = Field(None, description="Column holding the user's question")
    answer: str | None = Field(None, description="Column holding the assistant's answer")
    system: str | None = Field(None, description="Optional column with a per-row system prompt")


class DataSource(StrictModel):
    path: str = Field(description="A file, a folder of .txt/.md files, or a hub dataset id")
    format: FormatName = "auto"
    name: str | None = Field(None, description="Label in reports; defaults to the file name")
    columns: ColumnMap | None = Field(None, description="CSV/XLSX column mapping")
    sheet: str | None = Field(None, description="XLSX sheet (default: the first)")
    text_field: str = Field("text", description="Field holding the text in JSONL corpora")
    text_split: Literal["auto", "file", "paragraph", "line"] = Field(
        "auto", description="How .txt/.md files split into documents (auto: paragraphs if any, else lines)"
    )
    split: str = Field("train", description="Split of a hub dataset")
    on_error: Literal["strict", "skip"] = "strict"
    max_rejected_fraction: float = Field(0.1, ge=0.0, le=1.0)
    weight: float | None = Field(None, gt=0, description="Share of this source in a mixture")

    @property
    def label(self) -> str:
        from pathlib import PurePath

        return self.name or PurePath(self.path).name
