"""The FastAPI app, assembled from named parts: the gate, error handlers, info routes, generation routes."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from pydantic import ValidationError

from openrecipe.serve import tools
from openrecipe.serve.admin import add_admin_routes
from openrecipe.serve.completions import Generation, Prompt, ToolCalling, answer
from openrecipe.serve.config import ServeSettings
from openrecipe.serve.engines.base import ControlTokenInContent, Engine
from openrecipe.serve.errors import ApiError, ValidationApiError, add_error_handlers
from openrecipe.serve.gate import Gate
from openrecipe.serve.metrics import Metrics
from openrecipe.serve.protocol import ChatRequest, CompletionRequest, SamplingFields


def create_app(settings: ServeSettings, engine: Engine) -> Gate:
    """The ASGI app to run: the gate in front of the FastAPI routes."""
    app = FastAPI(title="openrecipe", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine
    _add_cors(app, settings)
    add_error_handlers(app)
    gate = Gate(app, settings)
    metrics = Metrics(engine, gate)
    app.state.gate, app.state.metrics = gate, metrics
    _add_info_routes(app, engine, gate, metrics)
    _add_generation_routes(app, settings, engine, metrics)
    add_admin_routes(app, settings, engine)
    return gate


def _add_cors(app: FastAPI, settings: ServeSettings) -> None:
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )


def _add_info_routes(app: FastAPI, engine: Engine, gate: Gate, metrics: Metrics) -> None:
    from fastapi.responses import PlainTextResponse

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": engine.model_id}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": model_id,
                    "object": "model",
                    "created": 0,
                    "owned_by": "openrecipe",
                    "parent": parent,
                    "context_length": engine.context_length,
                }
                for model_id, parent in engine.served_models()
            ],
        }

    @app.get("/v1/stats")
    async def stats() -> dict[str, Any]:
        return {"inflight": gate.active, **engine.stats()}

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")


def _add_generation_routes(app: FastAPI, settings: ServeSettings, engine: Engine, metrics: Metrics) -> None:
    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await _parse(request, ChatRequest, engine)
        messages = [message.for_template() for message in body.messages]
        if settings.system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": settings.system_prompt})
        offered = body.active_tools()
        template_tools = None
        if offered:
            messages, template_tools = tools.prepare(messages, offered, engine.chat_template)
        try:
            prompt_ids = engine.encode_chat(
                messages, tools=template_tools, parse_control_tokens=body.parse_control_tokens
            )
        except ControlTokenInContent as error:
            raise ApiError(400, str(error), param="messages", code="control_token_in_content") from None
        except Exception as error:
            raise ApiError(
                400, f"cannot apply the chat template to these messages: {error}", param="messages"
            ) from None
        calling = (
            ToolCalling(offered, tools.family(engine.chat_template), body.parallel_tool_calls) if offered else None
        )
        prompt = Prompt(_non_empty(prompt_ids, "messages"))
        generation = Generation(settings, engine, body, [prompt], chat=True, tool_calling=calling)
        return await metrics.observe("chat", answer(request, generation))

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await _parse(request, CompletionRequest, engine)
        prompts = []
        for prompt in body.prompts():
            if isinstance(prompt, str):
                ids, text = engine.encode_text(prompt), prompt
            else:
                ids, text = _checked_ids(prompt, engine), engine.decode_text(prompt) if body.echo else ""
            prompts.append(Prompt(_non_empty(ids, "prompt"), echo=text if body.echo else ""))
        generation = Generation(settings, engine, body, prompts, chat=False)
        return await metrics.observe("completions", answer(request, generation))


async def _parse(request: Request, model: type[SamplingFields], engine: Engine) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, "send the body as JSON with Content-Type: application/json", code="unsupported_media_type")
    raw = await request.body()
    try:
        data = json.loads(raw)
        # A lone surrogate (legal in JSON escapes, not in UTF-8) would break the tokenizer: refuse it here.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply", code="invalid_json") from None
    except UnicodeError as error:
        raise ApiError(
            400, f"request body holds text that is not valid Unicode: {error}", code="invalid_json"
        ) from None
    except ValueError as error:  # JSONDecodeError, and integers past Python's digit limit
        raise ApiError(400, f"request body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    try:
        body = model.model_validate(data)
    except ValidationError as error:
        raise ValidationApiError(list(error.errors())) from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply", code="invalid_json") from None
    served = [model_id for model_id, _ in engine.served_models()]
    if body.model not in served:
        raise ApiError(
            404,
            f"model {body.model!r} does not exist; this server serves {', '.join(map(repr, served))}",
            param="model",
            code="model_not_found",
        )
    request.state.user = body.user
    return body


def _non_empty(ids: list[int], param: str) -> list[int]:
    if not ids:
        raise ApiError(400, f"the {param} is empty (it encodes to no tokens)", param=param, code="empty_prompt")
    return ids


def _checked_ids(ids: list[int], engine: Engine) -> list[int]:
    vocabulary = engine.vocab_size
    bad = next((i for i in ids if not 0 <= i < vocabulary), None)
    if bad is not None:
        raise ApiError(400, f"token id {bad} is outside the vocabulary (0..{vocabulary - 1})", param="prompt")
    return ids
