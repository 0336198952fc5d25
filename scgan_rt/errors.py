"""Exception hierarchy and the exit codes the CLI maps them to.

Every user-facing failure is a ``ScganError`` subclass carrying its exit code, so the
CLI can print one line and exit without a traceback. The classes also subclass the
matching builtin so library callers can keep catching ``ValueError``/``OSError``.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_BAD_MODEL = 4
EXIT_RESOURCE = 5
EXIT_PARTIAL = 6
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

EXIT_CODES = {
    EXIT_OK: "success (warnings allowed)",
    EXIT_INTERNAL: "internal bug (traceback only with --debug)",
    EXIT_USAGE: "usage error",
    EXIT_BAD_INPUT: "bad input media",
    EXIT_BAD_MODEL: "bad model / weights / engine",
    EXIT_RESOURCE: "resource failure (no device, out of memory, disk full)",
    EXIT_PARTIAL: "batch finished with some items failed",
    EXIT_INTERRUPTED: "interrupted (SIGINT)",
    EXIT_TERMINATED: "terminated (SIGTERM)",
}


class ScganError(Exception):
    """Base class: a failure the user can act on. ``str(err)`` is the one-line message."""

    exit_code = EXIT_INTERNAL


class UsageError(ScganError, ValueError):
    exit_code = EXIT_USAGE


class InputError(ScganError, ValueError):
    """Unreadable, corrupt, unsupported or oversized input media."""

    exit_code = EXIT_BAD_INPUT


class ModelError(ScganError, ValueError):
    """Weights, ONNX file or engine that cannot be used."""

    exit_code = EXIT_BAD_MODEL


class ResourceError(ScganError, OSError):
    """No device, out of memory, disk full, unwritable output."""

    exit_code = EXIT_RESOURCE


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that temp files are cleaned up as for Ctrl-C."""


# A signal the CLI's handler has seen. Native code that polls for signals (a codec or a
# thread pool) can swallow the KeyboardInterrupt the handler raised; the record lets the
# pipeline's checkpoints and the CLI's exit still honour it.
_signalled: list[int] = []


def note_signal(signum: int) -> None:
    _signalled.append(signum)


def signalled() -> int | None:
    return _signalled[-1] if _signalled else None


# What an interrupted run leaves for the next one to resume ("3 of 6 segments kept in
# .film.mp4.segments/"), for the CLI's interrupt line; set by whoever keeps the work.
_resumable: list[str] = []


def note_resumable(text: str) -> None:
    _resumable.append(text)


def resumable() -> str | None:
    return _resumable[-1] if _resumable else None


def raise_if_signalled() -> None:
    """Raise the interrupt for a recorded signal whose exception was lost."""
    import signal

    sig = signalled()
    if sig is None:
        return
    raise Terminated() if sig == signal.SIGTERM else KeyboardInterrupt()
