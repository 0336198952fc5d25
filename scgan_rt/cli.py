"""The ``scgan-rt`` command: a thin Typer layer over the library.

Each command parses arguments, calls one library function and turns ``ScganError`` into
a one-line message and its exit code (see ``errors.EXIT_CODES``). No traceback is shown
for user errors; ``SCGAN_DEBUG=1`` shows it for everything.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer
from rich.console import Console

from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, ScganError

app = typer.Typer(
    help="SCGAN colorization: photos, folders and films, from training to TensorRT.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
model_app = typer.Typer(help="Create and inspect generator weights.", no_args_is_help=True)
app.add_typer(model_app, name="model")

console = Console(stderr=True)
out = Console()
F = TypeVar("F", bound=Callable[..., Any])


def guarded(fn: F) -> F:
    """Map library errors to one stderr line + exit code; Ctrl-C to 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ScganError as e:
            if os.environ.get("SCGAN_DEBUG"):
                raise
            console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/yellow]")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as e:  # a bug: say so in one line, keep the traceback for --debug
            if os.environ.get("SCGAN_DEBUG"):
                raise
            console.print(f"[red]internal error:[/red] {type(e).__name__}: {e} (rerun with SCGAN_DEBUG=1 for a traceback)",
                          highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    out.print_json(json.dumps(obj, default=str))


# --- foundation commands (issue 2) ---

# --- train commands (issue 3) ---

# --- deployment commands (issue 4) ---


def main() -> None:
    app()


if __name__ == "__main__":
    main()
