"""Pure parts of the fixes the adversarial suite led to (see SECURITY.md, findings)."""

import errno

import pytest

from worker_launcher.core import identity as privileges
from worker_launcher.core.errors import MAX_MESSAGE_CHARS, ExitCode, LauncherError, one_line
from worker_launcher.classic import signals


def test_one_line_escapes_line_breaks_and_terminal_controls():
    assert one_line("a\nb\rc\x1b[2Jd\u2028e") == "a\\nb\\rc\\x1b[2Jd\\u2028e"
    assert one_line("/storm/local/wid: No such file") == "/storm/local/wid: No such file"


def test_one_line_is_bounded():
    line = one_line("x" * 200_000)
    assert len(line) < MAX_MESSAGE_CHARS + 40 and line.endswith("(199000 more characters)")


@pytest.mark.parametrize("text, limits", [
    ("7=1024,1=inf,3=8388608", ((7, 1024), (1, -1), (3, 8388608))),
    ("", ()), ("7=", ()), ("7=x", ()), ("=5", ()), ("7=-2", ()), ("-1=5", ()), ("7=1,,1=2", ()),
])
def test_parse_caller_limits(text, limits):
    assert privileges.parse_caller_limits(text) == limits


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
