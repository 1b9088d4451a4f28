"""`openrecipe ui`: the web workbench, plus `ui add-token` / `ui add-password` for signing in from elsewhere."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()
ui_app = typer.Typer(help="The web workbench: data review, recipes, runs, compare, chat, ship.")


def register(app: typer.Typer) -> None:
    app.add_typer(ui_app, name="ui")


def _store(workspace: Path):
    from openrecipe.ui.settings import UiSettings
    from openrecipe.ui.store import Store

    return Store(UiSettings(workspace=workspace).state_file)


@ui_app.callback(invoke_without_command=True)
def ui(
    ctx: typer.Context,
    workspace: Path = typer.Option(Path("."), "--workspace", "-w", help="Folder for data, recipes, runs and state."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; non-loopback needs a token or password."),
    port: int = typer.Option(7860, "--port"),
    session_hours: float = typer.Option(12.0, "--session-hours", help="Sessions expire this long after sign-in."),
) -> None:
    """Start the workbench (http://127.0.0.1:7860 by default)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from openrecipe.errors import OpenRecipeError
    from openrecipe.serve.config import is_loopback
    from openrecipe.ui.app import create_app
    from openrecipe.ui.auth import auth_configured
    from openrecipe.ui.settings import UiSettings

    settings = UiSettings(workspace=workspace.resolve(), host=host, port=port, session_hours=session_hours)
    if not is_loopback(host) and not auth_configured(_store(settings.workspace)):
        raise OpenRecipeError(
            f"refusing to listen on {host} without sign-in: anyone on the network could run jobs",
            fix=f"create a token first: openrecipe ui add-token NAME --workspace {workspace}, or keep --host 127.0.0.1",
        )
    console.print(f"openrecipe workbench on http://{host}:{port} (workspace {settings.workspace})")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


@ui_app.command("add-token", help="Create an access token (printed once; only its hash is stored).")
def add_token(
    name: str = typer.Argument(..., help="Who the token is for."),
    workspace: Path = typer.Option(Path("."), "--workspace", "-w"),
) -> None:
    from openrecipe.ui.auth import new_token

    token = new_token(_store(workspace.resolve()), name)
    console.print(f"token for {name} (shown once, only its hash is stored):")
    print(token)


@ui_app.command("add-password", help="Set a user's password (stored hashed).")
def add_password(
    user: str = typer.Argument(...),
    workspace: Path = typer.Option(Path("."), "--workspace", "-w"),
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True),
) -> None:
    from openrecipe.errors import OpenRecipeError
    from openrecipe.ui.auth import add_credential

    if len(password) < 8:
        raise OpenRecipeError("password too short", fix="use at least 8 characters")
    add_credential(_store(workspace.resolve()), user, "password", password)
    console.print(f"password set for {user}")
