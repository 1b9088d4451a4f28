"""The FastAPI app: OpenAI routes, safety middleware, errors in OpenAI's shape."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openrecipe.serve.config import ServeSettings
from openrecipe.serve.engines.base import Delta, Engine, Finished, GenerationRequest
from openrecipe.serve.protocol import ChatRequest, CompletionRequest, SamplingFields, error_response

log = logging.getLogger("openrecipe.serve")


class BodyLimit:
    """413 for bodies over the limit, whether or not a Content-Length was sent."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await error_response(413, f"request body is larger than {self.limit} bytes", code="request_too_large")(
                scope, receive, send
            )
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await error_response(413, f"request body is larger than {self.limit} bytes", code="request_too_large")(
                scope, receive, send
            )


class _TooLarge(Exception):
    pass


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.type, self.headers = (
            status,
            message,
            code,
            param,
            type_,
            headers,
        )


def create_app(settings: ServeSettings, engine: Engine) -> FastAPI:
    app = FastAPI(title="openrecipe", docs_url=None, redoc_url=None)
    app.state.inflight = 0
    app.state.engine = engine

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.middleware("http")
    async def guard(request: Request, call_next):
        started = time.perf_counter()
        request.state.id = f"req-{uuid.uuid4().hex[:12]}"
        request.state.usage = None
        origin = request.headers.get("origin")
        if origin is not None and origin not in settings.cors_origins:
            response = error_response(
                403, f"cross-origin requests from {origin} are not allowed", code="origin_not_allowed"
            )
        elif (
            settings.api_key
            and request.url.path != "/health"
            and request.method != "OPTIONS"
            and (request.headers.get("authorization") != f"Bearer {settings.api_key}")
        ):
            response = error_response(
                401,
                "missing or invalid API key (send Authorization: Bearer <key>)",
                type_="authentication_error",
                code="invalid_api_key",
            )
        else:
            response = await call_next(request)
        usage = request.state.usage or {}
        log.info(
            "%s %s %s %d prompt_tokens=%s completion_tokens=%s latency_ms=%.0f",
            request.state.id,
            request.method,
            request.url.path,
            response.status_code,
            usage.get("prompt_tokens", "-"),
            usage.get("completion_tokens", "-"),
            1000 * (time.perf_counter() - started),
        )
        response.headers["x-request-id"] = request.state.id
        return response

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(
            error.status,
            error.message,
            type_=error.type,
            param=error.param,
            code=error.code,
            headers=error.headers,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(
            error.status_code, str(error.detail), code="not_found" if error.status_code == 404 else None
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return _validation_response(error.errors())

    @app.exception_handler(Exception)
    async def _internal(request: Request, error: Exception) -> JSONResponse:
        log.exception("internal error in %s", getattr(request.state, "id", "?"))
        return error_response(500, "internal server error", type_="server_error", code="internal_error")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": engine.model_id}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": engine.model_id, "object": "model", "created": 0, "owned_by": "openrecipe"}],
        }

    @app.get("/v1/stats")
    async def stats() -> dict[str, Any]:
        return {"inflight": app.state.inflight, **engine.stats()}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await _parse(request, ChatRequest)
        try:
            messages = [
                {"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages
            ]
        except ValueError as error:
            raise ApiError(400, str(error), param="messages") from None
        if settings.system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": settings.system_prompt})
        try:
            prompt_ids = engine.encode_chat(messages)
        except Exception as error:
            raise ApiError(
                400, f"cannot apply the chat template to these messages: {error}", param="messages"
            ) from None
        return await _respond(request, body, prompt_ids, chat=True, prefix="")

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await _parse(request, CompletionRequest)
        prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
        return await _respond(request, body, engine.encode_text(prompt), chat=False, prefix=prompt if body.echo else "")

    async def _parse(request: Request, model: type[SamplingFields]) -> Any:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise ApiError(
                415,
                "send the body as JSON with Content-Type: application/json",
                code="unsupported_media_type",
            )
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ApiError(400, f"request body is not valid JSON: {error}", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ApiError(400, "request body must be a JSON object")
        try:
            body = model.model_validate(data)
        except ValidationError as error:
            raise _ValidationApiError(error.errors()) from None
        if body.model != engine.model_id:
            raise ApiError(
                404,
                f"model {body.model!r} does not exist; this server serves {engine.model_id!r}",
                param="model",
                code="model_not_found",
            )
        return body

    async def _respond(request: Request, body: SamplingFields, prompt_ids: list[int], *, chat: bool, prefix: str):
        requested = body.max_completion_tokens or body.max_tokens
        if requested is not None and requested > settings.max_tokens_cap:
            raise ApiError(
                400,
                f"max_tokens is {requested}; this server allows at most {settings.max_tokens_cap}",
                param="max_tokens",
                code="max_tokens_too_large",
            )
        max_tokens = requested or settings.default_max_tokens
        if len(prompt_ids) + (requested or 1) > engine.context_length:
            raise ApiError(
                400,
                f"this model's maximum context length is {engine.context_length} tokens; the prompt "
                f"has {len(prompt_ids)} and {requested or 1} more were requested",
                param="messages" if chat else "prompt",
                code="context_length_exceeded",
            )
        max_tokens = min(max_tokens, engine.context_length - len(prompt_ids))
        if app.state.inflight >= settings.max_concurrent:
            raise ApiError(
                429,
                f"the server is busy ({settings.max_concurrent} requests in flight); retry shortly",
                type_="rate_limit_error",
                code="too_many_requests",
                headers={"Retry-After": "1"},
            )
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        generation = GenerationRequest(
            prompt_ids=prompt_ids,
            max_tokens=max_tokens,
            emit=lambda event: loop.call_soon_threadsafe(events.put_nowait, event),
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stops=body.stops(),
        )
        app.state.inflight += 1
        engine.submit(generation)
        deadline = loop.time() + settings.request_timeout_s
        created = int(time.time())
        response_id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.get("include_usage"))
            return StreamingResponse(
                _stream(request, events, generation, deadline, chat, response_id, created, include_usage, prefix),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        try:
            text, finished = prefix, None
            while finished is None:
                event = await _next_event(request, events, generation, deadline)
                if isinstance(event, Delta):
                    text += event.text
                elif isinstance(event, Finished):
                    finished = event
                else:
                    raise ApiError(500, event.message, type_="server_error", code="generation_failed")
        finally:
            app.state.inflight -= 1
        usage = {
            "prompt_tokens": finished.prompt_tokens,
            "completion_tokens": finished.completion_tokens,
            "total_tokens": finished.prompt_tokens + finished.completion_tokens,
        }
        request.state.usage = usage
        choice: dict[str, Any] = {"index": 0, "finish_reason": finished.reason, "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {
            "id": response_id,
            "object": "chat.completion" if chat else "text_completion",
            "created": created,
            "model": engine.model_id,
            "choices": [choice],
            "usage": usage,
        }

    async def _next_event(request: Request, events: asyncio.Queue, generation: GenerationRequest, deadline: float):
        loop = asyncio.get_running_loop()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                generation.cancelled.set()
                raise ApiError(
                    504,
                    f"generation took longer than {settings.request_timeout_s:g} s",
                    type_="timeout_error",
                    code="timeout",
                )
            try:
                return await asyncio.wait_for(events.get(), timeout=min(remaining, 0.5))
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    generation.cancelled.set()
                    raise ApiError(499, "client disconnected", code="client_closed") from None

    async def _stream(
        request: Request,
        events: asyncio.Queue,
        generation: GenerationRequest,
        deadline: float,
        chat: bool,
        response_id: str,
        created: int,
        include_usage: bool,
        prefix: str,
    ) -> AsyncIterator[str]:
        def chunk(delta: dict[str, Any] | None, text: str | None, reason: str | None, usage=None) -> str:
            choice: dict[str, Any] = {"index": 0, "finish_reason": reason, "logprobs": None}
            if chat:
                choice["delta"] = delta or {}
            else:
                choice["text"] = text or ""
            payload = {
                "id": response_id,
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": created,
                "model": engine.model_id,
                "choices": [choice] if usage is None else [],
            }
            if usage is not None:
                payload["usage"] = usage
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

        try:
            if chat:
                yield chunk({"role": "assistant", "content": ""}, None, None)
            elif prefix:
                yield chunk(None, prefix, None)
            while True:
                try:
                    event = await _next_event(request, events, generation, deadline)
                except ApiError as error:
                    yield _sse_error(error.message, error.type, error.code)
                    return
                if isinstance(event, Delta):
                    yield chunk({"content": event.text}, event.text, None)
                elif isinstance(event, Finished):
                    usage = {
                        "prompt_tokens": event.prompt_tokens,
                        "completion_tokens": event.completion_tokens,
                        "total_tokens": event.prompt_tokens + event.completion_tokens,
                    }
                    request.state.usage = usage
                    yield chunk({}, "", event.reason)
                    if include_usage:
                        yield chunk(None, None, None, usage=usage)
                    yield "data: [DONE]\n\n"
                    return
                else:
                    yield _sse_error(event.message, "server_error", "generation_failed")
                    return
        finally:
            # Reached on normal end, on error, and when the client goes away mid-stream (the generator is
            # closed): the engine stops working on this request.
            generation.cancelled.set()
            app.state.inflight -= 1

    return BodyLimit(app, settings.max_body_bytes)  # type: ignore[return-value]


def _sse_error(message: str, type_: str, code: str | None) -> str:
    """An error inside a stream that has already sent 200: one data line in OpenAI's error shape."""
    return f"data: {json.dumps({'error': {'message': message, 'type': type_, 'param': None, 'code': code}})}\n\n"


class _ValidationApiError(ApiError):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        first = errors[0]
        param = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or None
        super().__init__(
            400,
            f"{param}: {first.get('msg')}" if param else str(first.get("msg")),
            param=param,
            code="invalid_value",
        )


def _validation_response(errors: list[dict[str, Any]]) -> JSONResponse:
    error = _ValidationApiError(errors)
    return error_response(400, error.message, param=error.param, code=error.code)
