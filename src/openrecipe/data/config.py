"""Config of one data source, as written in a recipe or implied by CLI arguments."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from openrecipe.config.base import StrictModel

FormatName = Literal["auto", "messages", "alpaca", "sharegpt", "table", "text"]


class ColumnMap(StrictModel):
    """Which column holds what; names follow LLaMA-Factory's `dataset_info.json` `columns` where they exist."""

    question: str | None = Field(None, description="Table column holding the user's question")
    answer: str | None = Field(None, description="Table column holding the assistant's answer")
    system: str | None = Field(None, description="Column with a per-row system prompt")
    prompt: str | None = Field(None, description="Alpaca: the instruction column")
    query: str | None = Field(None, description="Alpaca: the optional input column appended to the instruction")
    response: str | None = Field(None, description="Alpaca: the output column")
    history: str | None = Field(None, description="Alpaca: earlier [question, answer] pairs")
    messages: str | None = Field(None, description="Chat/ShareGPT: the column holding the turns")
    tools: str | None = Field(None, description="Chat/ShareGPT: the column holding the tool definitions")
    text: str | None = Field(None, description="Text corpora: the column holding the text")


class RoleTags(StrictModel):
    """How a ShareGPT-style file names its keys and speakers (LLaMA-Factory's `tags`)."""

    role_tag: str = "from"
    content_tag: str = "value"
    user_tag: str = "human"
    assistant_tag: str = "gpt"
    observation_tag: str = "observation"
    function_tag: str = "function_call"
    system_tag: str = "system"


class DataSource(StrictModel):
    path: str = Field(
        description="A file (JSONL, JSON, CSV, XLSX, Parquet, Arrow, .txt/.md), a folder (text files, data files "
        "or a `save_to_disk` dataset), a LLaMA-Factory dataset_info.json, or a hub dataset id"
    )
    format: FormatName = "auto"
    name: str | None = Field(None, description="Label in reports; defaults to the file name")
    dataset: str | None = Field(None, description="Entry to read when `path` is a dataset_info.json")
    columns: ColumnMap | None = Field(None, description="Which column holds what (default: the format's own names)")
    tags: RoleTags | None = Field(None, description="ShareGPT keys and speaker names, if not from/value/human/gpt")
    unknown_fields: Literal["ignore", "error"] = Field(
        "ignore", description="Columns no reader uses: ignore them (counted in the report) or stop at the first"
    )
    sheet: str | None = Field(None, description="XLSX sheet (default: the first)")
    delimiter: str | None = Field(
        None, min_length=1, max_length=1, description="CSV delimiter (default: detected from the header)"
    )
    text_field: str = Field("text", description="Field holding the text in JSONL corpora")
    text_split: Literal["auto", "file", "paragraph", "line"] = Field(
        "auto", description="How .txt/.md files split into documents (auto: paragraphs if any, else lines)"
    )
    split: str = Field("train", description="Split of a hub dataset or of a saved dataset dictionary")
    subset: str | None = Field(None, description="Subset (config) of a hub dataset: the folder holding its files")
    on_error: Literal["strict", "skip"] = "strict"
    max_rejected_fraction: float = Field(0.1, ge=0.0, le=1.0)
    weight: float | None = Field(None, gt=0, description="Share of this source in a mixture")

    @property
    def label(self) -> str:
        from pathlib import PurePath

        return self.name or self.dataset or PurePath(self.path).name

    def column(self, key: str, default: str) -> str:
        """The column the user mapped to `key`, else the format's own name for it."""
        mapped = getattr(self.columns, key) if self.columns is not None else None
        return mapped or default
