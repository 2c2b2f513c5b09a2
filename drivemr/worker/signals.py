"""How a worker process answers the signals and console events that end it.

Why one place: a worker holds claims other workers wait for. Ending it the right way
decides whether they take its tasks over at once or only after the lease (minutes), and
whether its running attempts die with it or go on as orphans.

=====================================  ===================================================
Ctrl-C (SIGINT), SIGTERM               drain: claim nothing more, let running attempts
                                       finish and commit (a service manager's stop)
the same again                         stop now (exit 130 after Ctrl-C, 143 after SIGTERM)
SIGHUP (terminal closed, SSH dropped)  stop now (exit 129)
Windows Ctrl-Break (SIGBREAK)          stop now (exit 130)
Windows console closed, log-off,       stop now, within the few seconds Windows allows
shut-down (SetConsoleCtrlHandler)      (exit 129)
=====================================  ===================================================

"Stop now" is :meth:`~drivemr.worker.daemon.Worker.stop_now`: running attempts are killed
(never committed), the last heartbeat says ``stopped`` so other workers reclaim the tasks
at once, and one log line says why. A worker that must survive its terminal runs as a
service (docs/operating.md) or detached from it (``nohup``/``setsid``).
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("drivemr.worker")

CLOSE_WAIT_SECONDS = 4.0
"""How long a console-close handler waits for the worker to end: Windows kills the
process about 5 s after CTRL_CLOSE_EVENT whatever the handler does."""

# Windows console control events (wincon.h).
CTRL_C_EVENT, CTRL_BREAK_EVENT, CTRL_CLOSE_EVENT = 0, 1, 2
CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT = 5, 6


class Stoppable(Protocol):
    def request_stop(self, why: str = "", *, again_code: int = 130) -> None: ...

    def stop_now(self, why: str, *, code: int = 130) -> None: ...

    @property
    def finished(self) -> Any: ...


def install(worker: Stoppable) -> None:
    """Wire the process's signals (and, on Windows, console events) to ``worker``.
    Call from the main thread before :meth:`Worker.run`."""

    def on_sigint(signum: int, frame: object) -> None:
        worker.request_stop("Ctrl-C", again_code=130)

    def on_sigterm(signum: int, frame: object) -> None:
        worker.request_stop("SIGTERM", again_code=143)

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigterm)
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is not None:

        def on_sighup(signum: int, frame: object) -> None:
            worker.stop_now("terminal closed (SIGHUP)", code=129)

        signal.signal(sighup, on_sighup)
    sigbreak = getattr(signal, "SIGBREAK", None)
    if sigbreak is not None:  # Windows: Ctrl-Break (the C runtime maps close events here too)

        def on_sigbreak(signum: int, frame: object) -> None:
            worker.stop_now("Ctrl-Break or console closed (SIGBREAK)", code=130)

        signal.signal(sigbreak, on_sigbreak)
    if sys.platform == "win32":
        _install_console_handler(worker)


def console_event_handler(
    worker: Stoppable, *, has_console: Callable[[], bool] = lambda: True
) -> Callable[[int], bool]:
    """The console control handler (as ``SetConsoleCtrlHandler`` calls it, on a thread of
    its own): close, log-off and shut-down stop the worker now and wait for it to end
    (its last heartbeat written) before returning; Ctrl-C and Ctrl-Break are left to the
    signal handlers. Log-off is ignored without a console of our own (a service)."""
    names = {
        CTRL_CLOSE_EVENT: "console closed",
        CTRL_LOGOFF_EVENT: "user logged off",
        CTRL_SHUTDOWN_EVENT: "system shutting down",
    }

    def handler(event: int) -> bool:
        if event not in names:
            return False  # Ctrl-C / Ctrl-Break: the signal handlers
        if event == CTRL_LOGOFF_EVENT and not has_console():
            return False  # a service outlives log-offs
        worker.stop_now(names[event], code=129)
        worker.finished.wait(CLOSE_WAIT_SECONDS)
        return True

    return handler


_KEEP: list[Any] = []  # the ctypes callback must outlive the process's use of it


def _install_console_handler(worker: Stoppable) -> None:  # pragma: no cover - Windows only
    try:
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        routine = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.DWORD)  # type: ignore[attr-defined]
        handler = console_event_handler(
            worker, has_console=lambda: bool(kernel32.GetConsoleWindow())
        )
        callback = routine(lambda event: bool(handler(int(event))))
        if not kernel32.SetConsoleCtrlHandler(callback, True):
            raise OSError(ctypes.get_last_error(), "SetConsoleCtrlHandler failed")  # type: ignore[attr-defined]
        _KEEP.append(callback)
    except (OSError, AttributeError) as exc:
        log.warning("console close events are not handled (%s): closing the console "
                    "ends this worker without releasing its claims", exc)  # fmt: skip
