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


# libgomp threads spin this many times before sleeping (default 300,000). Shorter spins
# keep the torch CPU backend fast when other processes share the cores: measured on 2
# cores with 2 busy processes, scgan-lite 1.0-2.5 -> 8.1-11.9 frames/s; alone, unchanged within noise.
OMP_SPIN = "100000"


def quiet_openmp(environ: dict[str, str]) -> None:
    """Shorter OpenMP spin-waits unless the user chose an OpenMP wait policy; this must
    happen before torch (libgomp) is loaded."""
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        environ["GOMP_SPINCOUNT"] = OMP_SPIN


def main() -> None:
    quiet_openmp(os.environ)  # type: ignore[arg-type]
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
