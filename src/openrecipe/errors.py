"""The one exception type for user mistakes: what went wrong, where, and how to fix it."""

from __future__ import annotations


class OpenRecipeError(Exception):
    """A problem the user can fix: bad input, bad config, missing file.

    The CLI prints it as one line (exit code 2) instead of a traceback.
    """

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.format())

    def format(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text += f" — {self.fix}"
        return text


class MultipleErrors(OpenRecipeError):
    """Several user errors reported together (e.g. every problem of a recipe at once)."""

    def __init__(self, errors: list[OpenRecipeError], *, header: str) -> None:
        self.errors = errors
        self.header = header
        super().__init__(header)

    def format(self) -> str:
        lines = [self.header] + [f"  - {error.format()}" for error in getattr(self, "errors", [])]
        return "\n".join(lines)


class RunInterrupted(Exception):
    """SIGTERM/SIGINT arrived: state was saved at a step boundary; re-running the command resumes."""

    exit_code = 3
