"""The layer lock of a run root, seen from a test: held by the test (a stand-in for a
launcher that holds it), and who holds or waits for it, from /proc/locks."""

import fcntl
import os
import time
from pathlib import Path


class LayerLock:
    """<run-root>/layers/lock, the file the launcher locks while it changes layers."""

    def __init__(self, run_root: Path):
        self.path = Path(run_root) / "layers" / "lock"
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.inode = os.fstat(self.fd).st_ino
        self.held = False

    def hold(self, shared: bool = False) -> "LayerLock":
        """Exclusive (as a launcher mounting or unmounting a layer) or shared (as a launch
        standing its overlay on mounted layers, or a reap looking at them)."""
        fcntl.lockf(self.fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        self.held = True
        return self

    def release(self) -> None:
        if self.held:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
            self.held = False

    def close(self) -> None:
        self.release()
        os.close(self.fd)

    def _entries(self) -> list:
        """(waiting, pid) of every POSIX lock entry on this file."""
        found = []
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            waiting = fields[1] == "->"
            if waiting:
                fields = fields[1:]
            if fields[1] == "POSIX" and fields[5].rsplit(":", 1)[-1] == str(self.inode):
                found.append((waiting, int(fields[4])))
        return found

    def holders(self) -> set:
        return {pid for waiting, pid in self._entries() if not waiting}

    def waiters(self) -> set:
        return {pid for waiting, pid in self._entries() if waiting}

    def wait_for_waiter(self, timeout: float = 20.0) -> int:
        """The pid of the first process seen blocked on the lock."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiters = self.waiters()
            if waiters:
                return min(waiters)
            time.sleep(0.01)
        raise AssertionError(f"nobody waited for {self.path}")
