"""`openrecipe` command line: parses, calls a stage or component, prints. Exit codes: 0 ok,
1 internal error, 2 user error (one clear line; traceback only with --debug)."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from openrecipe import __version__
from openrecipe.cli import model_commands, recipe_commands
from openrecipe.errors import OpenRecipeError

app = typer.Typer(
    name="openrecipe",
    help="Make an open-weights LLM your own — and publish the recipe so anyone can reproduce it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
err_console = Console(stderr=True)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"openrecipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    _state["debug"] = debug


model_commands.register(app)
recipe_commands.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: turn errors into exit codes and readable messages."""
    from openrecipe.cli.quiet import quiet_libraries

    quiet_libraries()
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        app(args=argv, standalone_mode=False)
    except OpenRecipeError as error:
        if debug:
            err_console.print_exception()
        err_console.print(f"[bold red]error:[/bold red] {error.format()}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Exit, SystemExit) as done:
        code = getattr(done, "exit_code", getattr(done, "code", 0))
        sys.exit(code or 0)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as error:  # click's usage errors are handled below; anything else is our bug
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(error.exit_code)
        if debug:
            err_console.print_exception()
        else:
            err_console.print(
                f"[bold red]internal error:[/bold red] {type(error).__name__}: {error}\n"
                "re-run with --debug for the traceback, and please report it"
            )
        sys.exit(1)
