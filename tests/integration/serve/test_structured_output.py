"""response_format json_object / json_schema: decoding is constrained, so every reply parses and validates."""

from __future__ import annotations

import json
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, ConfigDict, Field

from tests.integration.serve.conftest import running_server


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Ticket(_Strict):
    priority: Literal["low", "medium", "high"]
    team: Literal["billing", "support"]


class Reading(_Strict):
    celsius: float = Field(ge=-40, le=60)
    ok: bool


class Order(_Strict):
    quantity: int = Field(ge=1, le=9)
    items: list[Literal["apple", "pear"]] = Field(min_length=1, max_length=3)


class Address(_Strict):
    city: str = Field(max_length=12)
    zip: int = Field(ge=10000, le=99999)


class Customer(_Strict):
    name: str = Field(max_length=12)
    address: Address
    tags: list[Literal["vip", "new"]] = Field(max_length=2)


SCHEMAS = [Ticket, Reading, Order, Address, Customer]
PROMPTS = ["Classify: my bill is wrong", "Give me the weather", "Order fruit", "Where do you live?"]


def _format(model: type[BaseModel]) -> dict:
    return {
        "type": "json_schema",
        "json_schema": {"name": model.__name__, "schema": model.model_json_schema(), "strict": True},
    }


def _check_all(client, model_name: str, prompts: list[str], max_tokens: int) -> list[str]:
    failures = []
    for schema in SCHEMAS:
        for prompt in prompts:
            reply = client.chat.completions.create(
                model=model_name,
                messages=[{"role": "user", "content": prompt}],
                response_format=_format(schema),
                max_tokens=max_tokens,
                temperature=0.7,
                seed=len(prompt),
            )
            text = reply.choices[0].message.content
            try:
                schema.model_validate_json(text)
            except Exception as error:
                failures.append(f"{schema.__name__} / {prompt!r}: {text!r} ({error})")
    return failures


@pytest.fixture(scope="module")
def client(tiny_model_dir):
    from openai import OpenAI

    with running_server(model=str(tiny_model_dir), max_tokens_cap=128) as (base, _):
        yield OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=120)


def test_json_schema_replies_always_validate(client):
    assert _check_all(client, "tiny", PROMPTS[:2], max_tokens=128) == []


def test_json_object_reply_is_an_object(client):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 8}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
        max_tokens=64,
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in reply if chunk.choices)
    assert isinstance(json.loads(text)["answer"], str)


def test_unusable_schema_is_a_400_naming_response_format(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}},
            max_tokens=4,
        )
    assert info.value.body["param"] == "response_format"


@pytest.mark.slow
def test_default_model_follows_five_schemas_on_fifty_prompts(default_model_dir):
    from openai import OpenAI

    prompts = [
        f"{verb} number {index}" for index in range(10) for verb in ("Describe", "Summarize", "List", "Rate", "Explain")
    ]
    with running_server(model=str(default_model_dir), max_tokens_cap=128, max_batch_size=8) as (base, _):
        client = OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=300)
        assert _check_all(client, "tiny", prompts, max_tokens=128) == []
