"""A real syslog socket for tests of the audit log: the launcher's syslog() lands here."""

import os
import socket
import subprocess
import time
from pathlib import Path

from support.env import require

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
        self.sock.settimeout(5)
        self.linked = False
        if not os.path.lexists("/dev/log"):
            os.symlink(self.path, "/dev/log")
            self.linked = True

    def wrap(self, argv: list) -> list:
        if self.linked:
            return argv
        require(subprocess.run(["which", "unshare"], capture_output=True).returncode == 0,
                "unshare is not installed")
        return ["unshare", "-m", "--propagation", "private", "--", "sh", "-c",
                f'mount --bind {self.path} /dev/log && exec "$@"', "sh", *argv]

    def lines(self, marker: str, settle: float = 0.3) -> list:
        """The lines that mention `marker` (other launchers on this machine may log too),
        waiting for the first and then `settle` seconds for any more."""
        got, deadline = [], time.monotonic() + 5
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                line = self.sock.recv(65536).decode()
            except socket.timeout:
                break
            if marker in line:
                got.append(line)
                deadline = min(deadline, time.monotonic() + settle)
        return got

    def close(self):
        if self.linked:
            os.unlink("/dev/log")
        self.sock.close()


def parse(line: str) -> tuple:
    priority, _, rest = line.partition(">")
    return int(priority.lstrip("<")), rest
