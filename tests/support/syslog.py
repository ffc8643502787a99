"""A real syslog socket for tests of the audit log: the launcher's syslog() lands here."""

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from support.env import GROUP, SUPERVISOR, require

AUTHPRIV = 10 << 3
NOTICE, WARNING = 5, 4


class SyslogReceiver:
    """A datagram socket where the launcher's syslog() lands. When /dev/log is free it is
    bound there; when a real syslog daemon owns it, the launcher runs in a private mount
    namespace with our socket bind-mounted over /dev/log."""

    def __init__(self, directory: Path):
        self.path = directory / "log.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        os.chmod(self.path, 0o666)
        self.linked = False
        if not os.path.lexists("/dev/log"):
            try:
                os.symlink(self.path, "/dev/log")
                self.linked = True
            except FileExistsError:  # another test run took it meanwhile
                pass
        # Drain the socket all the time: while /dev/log is ours, every launcher on this
        # machine logs here, and a full queue would hold up (then drop) the line we want.
        self.received, self.changed = [], threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:  # shut down
                return
            with self.changed:
                self.received.append(data.decode(errors="replace"))
                self.changed.notify_all()

    def wrap(self, argv: list) -> list:
        if self.linked:
            return argv
        require(subprocess.run(["which", "unshare"], capture_output=True).returncode == 0,
                "unshare is not installed")
        return ["unshare", "-m", "--propagation", "private", "--", "sh", "-c",
                f'mount --bind {self.path} /dev/log && exec "$@"', "sh", *argv]

    def run(self, launcher, *args, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the installed launcher as the supervisor account, logging here."""
        argv = self.wrap(["setpriv", f"--reuid={SUPERVISOR}", f"--regid={GROUP}",
                          "--init-groups", "--", str(launcher.binary), *map(str, args)])
        return subprocess.run(argv, capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin"}, cwd="/", timeout=timeout)

    def lines(self, marker: str, settle: float = 0.3) -> list:
        """The lines that mention `marker` (other launchers on this machine may log too),
        waiting for the first (5 s at most) and then `settle` seconds for any more. Each
        line is returned once."""
        got, deadline = [], time.monotonic() + 5
        with self.changed:
            while True:
                keep = []
                for line in self.received:
                    (got if marker in line else keep).append(line)
                if len(keep) != len(self.received):
                    deadline = min(deadline, time.monotonic() + settle)
                self.received[:] = keep
                left = deadline - time.monotonic()
                if left <= 0:
                    return got
                self.changed.wait(left)

    def close(self):
        if self.linked:
            os.unlink("/dev/log")
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.reader.join(5)


def parse(line: str) -> tuple:
    priority, _, rest = line.partition(">")
    return int(priority.lstrip("<")), rest


def fields(line: str) -> dict:
    """The audit fields of a received line: {"CALLER": name, "UID": ..., "OUTCOME": ...}."""
    _, text = parse(line)
    caller, _, rest = text.split("]: ", 1)[1].partition(" : ")
    found = {"CALLER": caller}
    for field in rest.split(" ; "):
        key, _, value = field.partition("=")
        assert key not in found, f"{key} twice in {text}"
        found[key] = value
    return found


def one_logged(receiver, marker: str, wanted: dict) -> dict:
    """The one line logged for a call whose line holds `marker`, as fields; each of `wanted`
    (keys case-insensitive, values compared as text) must be as given."""
    lines = receiver.lines(marker)
    assert len(lines) == 1, lines
    found = fields(lines[0])
    want = {key.upper(): str(value) for key, value in wanted.items()}
    assert {key: found.get(key) for key in want} == want, found
    return found
