"""Ctrl-C and SIGTERM: the first asks for a clean stop, a second ends the process at once."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

WATCHED = (signal.SIGINT, signal.SIGTERM)


@dataclass
class StopRequest:
    """Set by SIGINT/SIGTERM; whoever runs work checks it at its next boundary."""

    signum: int | None = None
    stops_drawing: bool = False  # set by begin_drawing when no stop was asked for before

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum else 0


_active: StopRequest | None = None


@contextlib.contextmanager
def catch_stop_signals(notice: str | None = None, signals: tuple[int, ...] = WATCHED) -> Iterator[StopRequest]:
    """Within the block, the first SIGINT or SIGTERM sets the request (and writes `notice`
    to stderr); the handlers then revert to the system default, so a second one ends the
    process at once. Nested blocks share the outermost request. Outside the main thread
    (where Python cannot take signals) the request is never set."""
    global _active
    if _active is not None:
        yield _active
        return
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {signum: signal.getsignal(signum) for signum in signals}

    def handler(signum, frame):
        request.signum = signum
        for other in signals:
            signal.signal(other, signal.SIG_DFL)
        if notice:
            os.write(2, (notice + "\n").encode())

    for signum in signals:
        signal.signal(signum, handler)
    _active = request
    try:
        yield request
    finally:
        _active = None
        for signum, old in previous.items():
            signal.signal(signum, old)


def begin_drawing() -> None:
    """The run's training is over and its pictures come next. The pictures of a run stopped
    during training are still drawn (a second Ctrl-C quits at once); a first Ctrl-C from here
    on stops the drawing instead, and the run is kept as it is."""
    if _active is not None and not _active.requested:
        _active.stops_drawing = True


def end_drawing() -> None:
    """A new run begins (a demo's or a sweep's next): a stop stops its training again."""
    if _active is not None:
        _active.stops_drawing = False


def drawing_stopped() -> bool:
    """Whether a first stop came after begin_drawing: the pictures still to draw are left out."""
    return _active is not None and _active.stops_drawing and _active.requested


STOP_NOTICE = "stopping after the epoch in flight; everything so far is kept (Ctrl-C again to quit at once)"
SWEEP_STOP_NOTICE = "stopping the sweep: no new cells, the cells in flight stop after their epoch (Ctrl-C again to quit at once)"


def in_worker_thread(function: Callable, *args):
    """Run function(*args) in a thread while the main thread waits in short joins.

    Python runs signal handlers only on the main thread, between bytecodes; a
    chunk running in TensorFlow's C++ on the main thread would hold a Ctrl-C
    back until it ends. Waiting here, the handler runs at once, so the second
    Ctrl-C meets the default action and ends the process immediately.
    """
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = function(*args)
        except BaseException as err:  # handed to the main thread below
            outcome["error"] = err

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.05)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel kills this (helper) process when its parent dies, however the
    parent dies, so that no helper outlives the command."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)
