"""The workbench's FastAPI app (the same stack as `openrecipe serve`): pages, security middleware, errors."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware

from openrecipe.errors import OpenRecipeError
from openrecipe.ui import auth
from openrecipe.ui.i18n import MESSAGES, pick_language, translator
from openrecipe.ui.jobs import Watcher
from openrecipe.ui.settings import UiSettings
from openrecipe.ui.store import Store

log = logging.getLogger("openrecipe.ui")
HERE = Path(__file__).parent
PUBLIC_PATHS = ("/login", "/static/", "/lang/", "/favicon.ico")
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(/[^\s:'\"]+)+")


def is_loopback_client(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "testclient")


def public_message(request: Request, text: str) -> str:
    """Messages for a remote user name files, never the server's directories."""
    if is_loopback_client(request):
        return text
    return _ABSOLUTE_PATH.sub(lambda match: Path(match.group(0)).name, text)


class Security(BaseHTTPMiddleware):
    """Origin check and CSRF on every state change; a session (signed in, or automatic on loopback)."""

    async def dispatch(self, request: Request, call_next):
        state = request.app.state
        t = translator(_language(request))
        if request.method in UNSAFE:
            origin = request.headers.get("origin") or request.headers.get("referer")
            if not auth.same_origin(origin, request.headers.get("host")):
                return _refuse(request, 403, t("error.origin"))
        session_id = request.cookies.get(auth.SESSION_COOKIE)
        session = auth.load_session(state.store, session_id)
        new_cookie = None
        path = request.url.path
        if session is None and not path.startswith(PUBLIC_PATHS):
            if state.auth_required:
                if request.method == "GET" and not path.startswith("/api/"):
                    return RedirectResponse(f"/login?next={path}", status_code=303)
                return _refuse(request, 401, t("error.login"))
            new_cookie, session = auth.create_session(state.store, "local", state.settings.session_hours * 3600)
        request.state.session = session
        if request.method in UNSAFE and not path.startswith("/login"):
            sent = request.headers.get(auth.CSRF_HEADER, "")
            if session is None or not secrets.compare_digest(sent, session.csrf):
                return _refuse(request, 403, t("error.csrf"))
        response = await call_next(request)
        if new_cookie:
            _set_session_cookie(response, new_cookie, state.settings.session_hours)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


def _set_session_cookie(response: Response, session_id: str, hours: float) -> None:
    response.set_cookie(
        auth.SESSION_COOKIE, session_id, max_age=int(hours * 3600), httponly=True, samesite="strict", path="/"
    )


def _refuse(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"error": message}, status_code=status)
    return HTMLResponse(f"<!doctype html><h1>{status}</h1><p>{message}</p>", status_code=status)


def _language(request: Request) -> str:
    return pick_language(request.cookies.get("lang"), request.headers.get("accept-language"))


def create_app(settings: UiSettings) -> FastAPI:
    settings.workspace.mkdir(parents=True, exist_ok=True)
    for folder in (settings.data_dir, settings.recipes_dir, settings.runs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    store = Store(settings.state_file)
    watcher = Watcher(store)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from openrecipe.ui.jobs import adopt_cli_jobs

        adopt_cli_jobs(store, settings.workspace)
        watcher.start()
        yield
        await watcher.stop()
        from openrecipe.ui.chat import close_engines

        close_engines()

    app = FastAPI(title="openrecipe workbench", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.store = store
    app.state.watcher = watcher
    app.state.tables = {}
    app.state.auth_required = auth.auth_configured(store)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.state.templates = templates
    app.add_middleware(Security)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def render(request: Request, template: str, **context) -> HTMLResponse:
        language = _language(request)
        session = getattr(request.state, "session", None)
        return templates.TemplateResponse(
            request,
            template,
            {
                "t": translator(language),
                "lang": language,
                "messages_json": json.dumps(MESSAGES[language], ensure_ascii=False),
                "csrf": session.csrf if session else "",
                "signed_in": bool(session) and app.state.auth_required,
                **context,
            },
        )

    app.state.render = render

    @app.exception_handler(OpenRecipeError)
    async def _user_error(request: Request, error: OpenRecipeError):
        return JSONResponse({"error": public_message(request, error.format())}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException):
        t = translator(_language(request))
        detail = t("error.not_found") if error.status_code == 404 else str(error.detail)
        return _refuse(request, error.status_code, public_message(request, detail))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, error: Exception):
        log.exception("internal error on %s", request.url.path)
        return _refuse(request, 500, translator(_language(request))("error.internal"))

    @app.get("/", include_in_schema=False)
    async def home():
        return RedirectResponse("/data", status_code=303)

    @app.get("/lang/{code}", include_in_schema=False)
    async def switch_language(code: str, request: Request):
        referer = urlsplit(request.headers.get("referer") or "")
        same_site = referer.netloc == request.headers.get("host") and referer.path.startswith("/")
        target = referer.path + (f"?{referer.query}" if referer.query else "") if same_site else "/data"
        response = RedirectResponse(target, status_code=303)
        if code in MESSAGES:
            response.set_cookie("lang", code, max_age=365 * 86400, samesite="strict")
        return response

    @app.get("/login", include_in_schema=False)
    async def login_page(request: Request, failed: int = 0):
        token = secrets.token_urlsafe(16)
        response = render(request, "login.html", login_csrf=token, failed=bool(failed))
        response.set_cookie("login_csrf", token, httponly=True, samesite="strict", max_age=3600)
        return response

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        from urllib.parse import parse_qs

        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        cookie = request.cookies.get("login_csrf", "")
        if not cookie or not secrets.compare_digest(form.get("csrf", ""), cookie):
            return _refuse(request, 403, translator(_language(request))("error.csrf"))
        user = auth.check_login(
            store, token=form.get("token", ""), user=form.get("user", ""), password=form.get("password", "")
        )
        if user is None:
            return RedirectResponse("/login?failed=1", status_code=303)
        session_id, _ = auth.create_session(store, user, settings.session_hours * 3600)
        next_path = form.get("next", "/data")
        response = RedirectResponse(next_path if next_path.startswith("/") else "/data", status_code=303)
        _set_session_cookie(response, session_id, settings.session_hours)
        response.delete_cookie("login_csrf")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request):
        auth.end_session(store, request.cookies.get(auth.SESSION_COOKIE))
        response = JSONResponse({"ok": True})
        response.delete_cookie(auth.SESSION_COOKIE)
        return response

    from openrecipe.ui.routes_data import router as data_router
    from openrecipe.ui.routes_runs import router as runs_router
    from openrecipe.ui.routes_ship import router as ship_router

    app.include_router(data_router)
    app.include_router(runs_router)
    app.include_router(ship_router)
    return app
