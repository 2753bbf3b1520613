"""A per-page limit on CPU time, so that a loaded machine gives the same output as an idle one."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ExtractionTimeout(BaseException):
    """Raised by SIGPROF. A BaseException, so that `except Exception` inside lxml or trafilatura
    cannot swallow it and let the pathological page run on."""


@contextmanager
def cpu_time_limit(seconds: float) -> Iterator[None]:
    """Raise ExtractionTimeout inside the block after `seconds` of CPU time.

    ITIMER_PROF counts the process's CPU time (user and system), not wall time: a page that
    takes 5 s of CPU on an idle machine takes 5 s on a loaded one too, where wall time would cut
    it short. A thread cannot be interrupted from outside, but the main thread can be by a signal,
    and Ray runs tasks on the worker's main thread. Elsewhere (signal handlers can only be
    installed from the main thread) the block runs unlimited and max_html_bytes is the only bound.
    The handler runs between Python bytecodes, so a single long call into C finishes first.
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGPROF, _raise_timeout)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous if previous is not None else signal.SIG_DFL)


def _raise_timeout(signum, frame):
    raise ExtractionTimeout
