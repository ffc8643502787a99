"""Signals during a call: cancellation and time limits, raised only where that is safe.

SIGTERM, SIGINT, SIGHUP and SIGQUIT cancel a call (Storm's Process.destroy() sends SIGTERM).
The core runs in a session of its own (the stub's own_session), and after identity.start()
all its ids are root, so they come from root, or from the caller through the stub's waiting
parent, never from a terminal. They never interrupt the launcher at an arbitrary bytecode,
half-way through a privileged step: the handler only records the signal, except while the
launcher waits (`waiting`: for the layer lock, for a root child), where it raises Cancelled
at once. A signal recorded outside a wait raises at the next wait or checkpoint(). Cancelled
is raised at most once, and not at all once the call is being undone (`undoing`), so an undo
always runs to its end.

A wait may have a time limit: SIGALRM from a one-shot interval timer ends it with TimedOut.
An uncontended lock therefore costs no timer, and a contended one no polling.

Plain `_signal` (built in): the `signal` module imports enum, ~3 ms of every call.
"""

import _signal

from .errors import LauncherError

CANCEL_SIGNALS = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT)
NAMES = {_signal.SIGTERM: "SIGTERM", _signal.SIGINT: "SIGINT", _signal.SIGHUP: "SIGHUP",
         _signal.SIGQUIT: "SIGQUIT"}
_state = {"pending": 0, "done": False, "waiting": 0, "alarm": False}


class Cancelled(LauncherError):
    """The call was cancelled by a signal; exit 128 + its number, as if it had killed us."""

    def __init__(self, number: int):
        super().__init__(128 + number, f"cancelled by {NAMES.get(number, number)}",
                         outcome="failed")
        self.number = number


class TimedOut(Exception):
    """A `waiting(timeout)` ran out of time (not a LauncherError: the waiter words it)."""


def install() -> None:
    """Handle the cancel signals and SIGALRM from now on (replaces Python's SIGINT handler)."""
    for number in CANCEL_SIGNALS:
        _signal.signal(number, _on_cancel)
    _signal.signal(_signal.SIGALRM, _on_alarm)


def pending() -> int:
    """The cancel signal received so far, or 0."""
    return _state["pending"]


def _on_cancel(number, frame):
    if not _state["pending"]:
        _state["pending"] = number
    if _state["waiting"] and not _state["done"]:
        _state["done"] = True
        raise Cancelled(number)


def _on_alarm(number, frame):
    if _state["alarm"]:  # else a timer that fired as its wait ended: nothing to do
        _state["alarm"] = False
        raise TimedOut()


def checkpoint() -> None:
    """Raise Cancelled if a cancel signal arrived and the call is not being undone."""
    if _state["pending"] and not _state["done"]:
        _state["done"] = True
        raise Cancelled(_state["pending"])


def undoing() -> None:
    """The call is being undone: from now on a cancel signal is only recorded."""
    _state["done"] = True


class waiting:
    """`with waiting(timeout):` around one blocking call (a lock, a child's exit): a cancel
    signal raises Cancelled out of it at once; after `timeout` seconds (None: no limit) it
    is ended with TimedOut. The call must retry on EINTR (every Python wrapper does, PEP 475)
    so that other signals do not end it. Waits do not nest."""

    __slots__ = ("timeout",)

    def __init__(self, timeout=None):
        self.timeout = timeout

    def __enter__(self):
        checkpoint()
        _state["waiting"] += 1
        if self.timeout is not None:
            try:
                _state["alarm"] = True
                _signal.setitimer(_signal.ITIMER_REAL, max(self.timeout, 0.001))
            except BaseException:  # never leave a timer armed outside its wait
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc_info):
        try:
            _state["alarm"] = False  # first: a SIGALRM handled after this is a no-op
            if self.timeout is not None:
                _signal.setitimer(_signal.ITIMER_REAL, 0)
        finally:
            _state["waiting"] -= 1
        return False
