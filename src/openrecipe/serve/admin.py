"""Admin routes: load and unload LoRA adapters while the server runs, behind their own key."""

from __future__ import annotations

import asyncio
import hmac
from pathlib import Path

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from openrecipe.serve.config import ServeSettings
from openrecipe.serve.errors import ApiError


class AdapterLoad(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    path: str


def add_admin_routes(app: FastAPI, settings: ServeSettings, engine) -> None:
    """Registered only with an admin key; without one the routes do not exist (404)."""
    if not settings.admin_key:
        return
    expected = settings.admin_key.encode()

    def check(request: Request) -> None:
        given = (request.headers.get("x-admin-key") or "").encode()
        if not hmac.compare_digest(given, expected):
            raise ApiError(403, "admin routes need the admin key (send X-Admin-Key)", code="invalid_admin_key")
        if not hasattr(engine, "load_adapter"):
            raise ApiError(400, f"the {settings.engine} engine cannot load adapters", code="unsupported")

    @app.post("/admin/adapters")
    async def load(request: Request, body: AdapterLoad) -> dict:
        check(request)
        if not (Path(body.path) / "adapter_config.json").is_file():
            raise ApiError(400, f"{body.path} is not a PEFT adapter folder (no adapter_config.json)", param="path")
        try:
            future = engine.load_adapter(body.name, body.path)
        except ValueError as error:
            raise ApiError(409, str(error), param="name", code="conflict") from None
        try:
            await asyncio.wrap_future(future)
        except (OSError, ValueError, KeyError) as error:
            raise ApiError(400, f"cannot load adapter: {error}", param="path") from None
        return {"id": body.name, "object": "model", "parent": engine.model_id}

    @app.delete("/admin/adapters/{name}")
    async def unload(request: Request, name: str) -> dict:
        check(request)
        try:
            engine.unload_adapter(name)
        except KeyError:
            raise ApiError(404, f"no adapter named {name!r} is served", code="model_not_found") from None
        return {"id": name, "deleted": True}
