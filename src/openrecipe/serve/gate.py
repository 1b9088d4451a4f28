"""The gate every HTTP request passes before an endpoint sees it.

A plain ASGI middleware (not Starlette's BaseHTTPMiddleware, which hides client disconnects from endpoints):
origin and API-key checks, the body read whole under a size limit and a deadline, and one count of the
requests in flight — bodies still arriving included, so slow uploads cannot exceed the concurrency limit.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openrecipe.serve.config import ServeSettings
from openrecipe.serve.protocol import error_response

log = logging.getLogger("openrecipe.serve")

OPEN_PATHS = ("/health",)  # answered without an API key


class Gate:
    def __init__(self, app: ASGIApp, settings: ServeSettings) -> None:
        self.app = app
        self.settings = settings
        self.active = 0  # requests in flight: reading a body, generating, or streaming
        self.rejected = {"unauthorized": 0, "too_large": 0, "busy": 0, "body_timeout": 0}
        self._expected = f"Bearer {settings.api_key}".encode() if settings.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        request_id = state["id"] = f"req-{uuid.uuid4().hex[:12]}"
        state["usage"] = None
        status = [0]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        try:
            await self._admit(scope, receive, send_with_id)
        finally:
            usage = state.get("usage") or {}
            log.info(
                "%s %s %s %d prompt_tokens=%s completion_tokens=%s latency_ms=%.0f%s",
                request_id,
                scope["method"],
                scope["path"],
                status[0],
                usage.get("prompt_tokens", "-"),
                usage.get("completion_tokens", "-"),
                1000 * (time.perf_counter() - started),
                f" user={state['user']!r}" if state.get("user") else "",
            )

    def authorized(self, header: str | None) -> bool:
        """Constant-time comparison, so response timing does not reveal how much of a guessed key is right."""
        return self._expected is None or hmac.compare_digest((header or "").encode(), self._expected)

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is not None and origin not in self.settings.cors_origins:
            message = f"cross-origin requests from {origin} are not allowed"
            await error_response(403, message, code="origin_not_allowed")(scope, receive, send)
            return
        if (
            scope["path"] not in OPEN_PATHS
            and scope["method"] != "OPTIONS"
            and not self.authorized(headers.get("authorization"))
        ):
            self.rejected["unauthorized"] += 1
            await error_response(
                401,
                "missing or invalid API key (send Authorization: Bearer <key>)",
                type_="authentication_error",
                code="invalid_api_key",
            )(scope, receive, send)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        if self.active >= self.settings.max_concurrent:
            self.rejected["busy"] += 1
            await error_response(
                429,
                f"the server is busy ({self.settings.max_concurrent} requests in flight); retry shortly",
                type_="rate_limit_error",
                code="too_many_requests",
                headers={"Retry-After": "1"},
            )(scope, receive, send)
            return
        self.active += 1
        try:
            body = await self._read_body(scope, headers, receive, send)
            if body is not None:
                await self.app(scope, _replay(body, receive), send)
        finally:
            self.active -= 1

    async def _read_body(self, scope: Scope, headers: Headers, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None once an error has been answered (too large, too slow, client gone)."""
        limit = self.settings.max_body_bytes
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._too_large(scope, receive, send)
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.settings.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        await self._too_large(scope, receive, send)
                        return None
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            self.rejected["body_timeout"] += 1
            await error_response(
                408,
                f"the request body did not arrive within {self.settings.body_timeout_s:g} s",
                code="request_timeout",
                headers={"Connection": "close"},
            )(scope, receive, send)
            return None

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.rejected["too_large"] += 1
        await error_response(
            413,
            f"request body is larger than {self.settings.max_body_bytes} bytes",
            code="request_too_large",
            headers={"Connection": "close"},
        )(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """Hand the endpoint the body already read, then the live channel (where a disconnect arrives)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
