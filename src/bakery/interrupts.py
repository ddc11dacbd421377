"""How a long task is stopped: SIGTERM taken as Ctrl-C, a --timeout watchdog, and a clean-up
that the first interrupt does not cut short.

Signals reach the main thread only; elsewhere these change nothing (the waits they would cut
short are bounded anyway).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


class TimedOut(BaseException):
    """The watchdog fired (a BaseException, so no `except Exception` swallows it)."""


@contextlib.contextmanager
def _handled(handler: Callable[[int, Any], None], *signums: int) -> Iterator[bool]:
    """`handler` for `signums` while the block runs; yields whether it could be set."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield True
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> contextlib.AbstractContextManager[bool]:
    """SIGTERM (CI cancelling a job) takes the same way out as Ctrl-C."""
    return _handled(_interrupt, signal.SIGTERM)


@contextlib.contextmanager
def watchdog(timeout_s: float) -> Iterator[None]:
    """Raises TimedOut in the main thread when timeout_s runs out, whatever it is waiting on
    (a child process it waits for is killed on the way out)."""

    def fire(signum: int, frame: object) -> None:
        raise TimedOut

    with _handled(fire, signal.SIGALRM) as armed:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            yield
        finally:
            if armed:
                signal.setitimer(signal.ITIMER_REAL, 0)


def shielded(say: Callable[[str], None], note: str) -> contextlib.AbstractContextManager[bool]:
    """The first Ctrl-C (or SIGTERM) only says `note`; the second is obeyed."""
    pressed = []

    def handler(signum: int, frame: object) -> None:
        pressed.append(signum)
        if len(pressed) == 1:
            say(note)
            return
        raise KeyboardInterrupt

    return _handled(handler, signal.SIGINT, signal.SIGTERM)
