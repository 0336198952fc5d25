"""``python -m scgan_rt`` and the ``scgan-rt`` command.

The signal handlers go in before anything heavy is imported, so a Ctrl-C or SIGTERM at
any moment, even during start-up, ends the run cleanly with 130 / 143.
"""
from __future__ import annotations

import os
import signal
from typing import Any

from .errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, note_signal


def _on_signal(signum: int, frame: Any) -> None:
    note_signal(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def main() -> None:
    # `kill`, systemd and container stops send SIGTERM: clean up like Ctrl-C (no partial files).
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _on_signal)
    try:
        from .cli import run
    except KeyboardInterrupt as e:  # during start-up: nothing was written yet
        os._exit(EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED)
    run()


if __name__ == "__main__":
    main()
