"""`generate` stage: run prompts through a model and keep the replies (smoke tests, replay data)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from openrecipe.config.references import InputPath, ModelReference
from openrecipe.errors import OpenRecipeError
from openrecipe.stages.base import DATA, FILE, StageConfig, StageContext, StageResult, stage_kind


class GenerateStage(StageConfig):
    kind: Literal["generate"] = "generate"
    model: ModelReference = Field("base", validate_default=True, description="The model that replies")
    prompts: list[str] = Field(default_factory=list, description="Prompts written in the recipe")
    input: InputPath | None = Field(None, description="JSONL file with a `prompt` or `messages` field per row")
    system_prompt: str | None = Field(None, description="Defaults to the recipe's system_prompt")
    max_new_tokens: int = Field(64, ge=1, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    batch_size: int = Field(8, ge=1)
    show: int = Field(5, ge=0, description="How many prompt/reply pairs to print")

    @model_validator(mode="after")
    def _needs_prompts(self) -> GenerateStage:
        if not self.prompts and self.input is None:
            raise ValueError("give `prompts:` or `input:`")
        return self

    def artifact_kinds(self) -> dict[str, str]:
        return {"generations": FILE, "data": DATA}


@stage_kind(GenerateStage, "Generate replies for a list of prompts")
def run_generate(context: StageContext, config: GenerateStage) -> StageResult:
    from openrecipe.models.generation import GenerationSettings, build_messages, generate_texts
    from openrecipe.models.loading import load_model

    system = config.system_prompt if config.system_prompt is not None else context.system_prompt
    conversations = [build_messages(prompt, system) for prompt in config.prompts]
    if config.input is not None:
        conversations += read_prompt_file(context.resolve_path(config.input), system)
    loaded = load_model(context.resolve_model(config.model))
    settings = GenerationSettings(
        max_new_tokens=config.max_new_tokens, temperature=config.temperature, seed=context.seed
    )
    start = time.perf_counter()
    replies = generate_texts(loaded, conversations, settings, batch_size=config.batch_size)
    seconds = time.perf_counter() - start
    out = context.stage_dir / "generations.jsonl"
    from openrecipe.utils.fs import atomic_write_text

    atomic_write_text(
        out,
        "".join(
            json.dumps({"messages": conversation, "reply": reply}, ensure_ascii=False) + "\n"
            for conversation, reply in zip(conversations, replies, strict=True)
        ),
    )
    # The same pairs as a chat dataset, so a later stage can train on them (e.g. replay data).
    data = context.stage_dir / "data.jsonl"
    atomic_write_text(
        data,
        "".join(
            json.dumps({"messages": [*conversation, {"role": "assistant", "content": reply}]}, ensure_ascii=False)
            + "\n"
            for conversation, reply in zip(conversations, replies, strict=True)
            if reply.strip()
        ),
    )
    for conversation, reply in list(zip(conversations, replies, strict=True))[: config.show]:
        context.console.print(f"> {conversation[-1]['content']}", style="bold", markup=False)
        context.console.print(reply, markup=False, highlight=False)
    new_tokens = sum(len(loaded.tokenizer(reply, add_special_tokens=False)["input_ids"]) for reply in replies)
    return StageResult(
        metrics={"rows": len(replies), "generate_seconds": round(seconds, 3), "new_tokens": new_tokens},
        artifacts={"generations": str(out), "data": str(data)},
    )


def read_prompt_file(path: Path, system: str | None) -> list[list[dict[str, str]]]:
    """Rows with `prompt` (a string) or `messages` (chat list); errors name file and line."""
    from openrecipe.models.generation import build_messages

    if not path.is_file():
        raise OpenRecipeError(f"prompt file not found: {path}", fix="check the path")
    conversations = []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise OpenRecipeError(f"invalid JSON ({error.msg})", where=where) from None
            if isinstance(row, dict) and isinstance(row.get("prompt"), str):
                conversations.append(build_messages(row["prompt"], row.get("system", system)))
            elif isinstance(row, dict) and isinstance(row.get("messages"), list):
                messages = row["messages"]
                if not all(isinstance(m, dict) and {"role", "content"} <= m.keys() for m in messages):
                    raise OpenRecipeError("each message needs `role` and `content`", where=where)
                if system and messages and messages[0]["role"] != "system":
                    messages = [{"role": "system", "content": system}, *messages]
                conversations.append(messages)
            else:
                raise OpenRecipeError(
                    "row has no `prompt` string or `messages` list",
                    where=where,
                    fix='write {"prompt": "..."} or {"messages": [...]}',
                )
    if not conversations:
        raise OpenRecipeError(f"{path} has no prompts", fix="add one JSON object per line")
    return conversations
