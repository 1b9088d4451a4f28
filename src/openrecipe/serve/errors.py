"""API errors in OpenAI's shape, and the handlers that turn every exception into one."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from openrecipe.serve.protocol import error_response

log = logging.getLogger("openrecipe.serve")


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

    def response(self) -> JSONResponse:
        return error_response(
            self.status, self.message, type_=self.type, param=self.param, code=self.code, headers=self.headers
        )

    def sse(self) -> str:
        """The error inside a stream that has already sent 200: one data line in OpenAI's error shape."""
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return f"data: {json.dumps(body)}\n\n"


class ValidationApiError(ApiError):
    """A 400 naming the first offending field, in the dotted form OpenAI's `param` uses."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        first = errors[0]
        param = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or None
        if first.get("type") == "extra_forbidden":
            super().__init__(
                400,
                f"unsupported parameter: {param!r} (this server refuses fields it would otherwise ignore)",
                param=param,
                code="unsupported_parameter",
            )
            return
        message = str(first.get("msg"))
        super().__init__(400, f"{param}: {message}" if param else message, param=param, code="invalid_value")


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return error.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if error.status_code == 404 else None
        return error_response(error.status_code, str(error.detail), code=code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return ValidationApiError(list(error.errors())).response()

    @app.exception_handler(Exception)
    async def _internal(request: Request, error: Exception) -> JSONResponse:
        log.exception("internal error in %s", getattr(request.state, "id", "?"))
        return error_response(500, "internal server error", type_="server_error", code="internal_error")
