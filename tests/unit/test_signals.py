"""Pure parts of `signal`: Storm's strtol rule for its arguments, and pid 1 never meaning
"every process of the user"."""

import errno

import pytest

from worker_launcher.classic import signals
from worker_launcher.classic.signals import parse_c_long
from worker_launcher.core.errors import ExitCode, LauncherError


@pytest.mark.parametrize("text, want", [
    ("15", 15), ("+15", 15), ("-1", -1), ("  42", 42), ("\t7", 7), ("0", 0), ("007", 7),
    ("", None), (" ", None), ("-", None), ("1_000", None), ("12x", None), ("1.5", None),
    ("42 ", None), ("0x10", None), ("TERM", None), ("١٢", None),
])
def test_parse_c_long(text, want):
    assert parse_c_long(text) == want


class FakeKill:
    """os.kill stand-in: which (pid, sig) were asked, with ESRCH for missing targets."""

    def __init__(self, alive):
        self.alive, self.calls = set(alive), []

    def __call__(self, pid, sig):
        self.calls.append((pid, sig))
        if pid == -1:
            return  # the kernel's broadcast "succeeds" whenever the user has any process
        if pid not in self.alive:
            raise ProcessLookupError(errno.ESRCH, "No such process")
        if abs(pid) == 1:
            raise PermissionError(errno.EPERM, "Operation not permitted")


def test_pid_1_is_never_a_broadcast(monkeypatch):
    fake = FakeKill(alive={1, -1})
    monkeypatch.setattr(signals.os, "kill", fake)
    with pytest.raises(LauncherError) as caught:
        signals.send(1, 9)
    assert caught.value.code == ExitCode.UNABLE_TO_SIGNAL_CONTAINER
    assert all(pid != -1 for pid, _ in fake.calls), fake.calls


def test_other_pids_still_prefer_the_process_group(monkeypatch):
    fake = FakeKill(alive={-4242, 4242})
    monkeypatch.setattr(signals.os, "kill", fake)
    assert signals.send(4242, 15) == ExitCode.OK
    assert fake.calls[-1] == (-4242, 15)
