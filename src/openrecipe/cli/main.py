"""`openrecipe` command line: parses, calls a stage or component, prints. Exit codes: 0 ok,
1 internal error, 2 user error (one clear line; traceback only with --debug)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from openrecipe import __version__
from openrecipe.cli import (
    artifact_commands,
    data_commands,
    doctor_commands,
    eval_commands,
    import_commands,
    jobs_commands,
    model_commands,
    publish_commands,
    recipe_commands,
    serve_commands,
    sweep_commands,
    ui_commands,
)
from openrecipe.errors import OpenRecipeError, RunInterrupted

EXIT_INTERNAL = 1
EXIT_USER = 2
err_console = Console(stderr=True)
# What click (or the copy of it newer Typer releases carry) prints and exits for itself: usage errors such as
# an option out of its range are exit 2 with click's own message, not internal errors.
_CLICK_ERROR = next(base for base in typer.BadParameter.__mro__ if base.__name__ == "ClickException")
_PASS_THROUGH = (typer.Exit, typer.Abort, _CLICK_ERROR)


class ErrorHandlingGroup(TyperGroup):
    """Turns exceptions into exit codes inside click, so Typer's test runner sees the same behaviour."""

    def invoke(self, ctx: typer.Context):
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except OpenRecipeError as error:
            if debug:
                err_console.print_exception()
            err_console.print(f"[bold red]error:[/bold red] {escape(error.format())}", highlight=False, soft_wrap=True)
            ctx.exit(EXIT_USER)
        except RunInterrupted as interrupted:
            err_console.print(f"[yellow]{escape(str(interrupted))}[/yellow]")
            ctx.exit(RunInterrupted.exit_code)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            ctx.exit(130)
        except Exception as error:
            if debug:
                err_console.print_exception()
            else:
                err_console.print(
                    f"[bold red]internal error:[/bold red] {type(error).__name__}: {escape(str(error))}\n"
                    "re-run with --debug for the traceback, and please report it",
                    highlight=False,
                )
            ctx.exit(EXIT_INTERNAL)


app = typer.Typer(
    name="openrecipe",
    cls=ErrorHandlingGroup,
    help="Make an open-weights LLM your own — and publish the recipe so anyone can reproduce it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        print(f"openrecipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Global options."""


model_commands.register(app)
recipe_commands.register(app)
data_commands.register(app)
serve_commands.register(app)
eval_commands.register(app)
publish_commands.register(app)
jobs_commands.register(app)
artifact_commands.register(app)
sweep_commands.register(app)
doctor_commands.register(app)
import_commands.register(app)
ui_commands.register(app)


def main() -> None:
    from openrecipe.cli.quiet import quiet_libraries

    quiet_libraries()
    app()
