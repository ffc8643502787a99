"""Helpers for the classic-verb tests: a policy with storm directories, trees, expectations."""

import os
import stat
from pathlib import Path

from support.env import SUPERVISOR, USER, gid_of_group, uid_of


class Storm:
    """storm.local.dir and storm.workers.artifacts.dir (root-owned 0755) named by a policy,
    and a root-owned victim directory outside them."""

    def __init__(self, base: Path):
        self.base = base
        self.local = base / "local"
        self.artifacts = base / "artifacts"
        self.victim = base / "victim"
        for path in (self.local, self.artifacts):
            path.mkdir(mode=0o755)
        self.victim.mkdir(mode=0o750)
        (self.victim / "secret").write_text("root's\n")
        os.chmod(self.victim / "secret", 0o600)

    def workdir(self, name: str = "wid") -> Path:
        """local/workers/<name>, as Storm's supervisor leaves it: its own, 0755."""
        workers = self.local / "workers"
        workers.mkdir(mode=0o755, exist_ok=True)
        os.chown(workers, uid_of(SUPERVISOR), gid_of_group())
        path = workers / name
        path.mkdir(mode=0o755)
        os.chown(path, uid_of(SUPERVISOR), gid_of_group())
        return path

    def victim_state(self) -> list:
        """Owner, mode and content of everything in the victim directory."""
        return [(str(p), p.lstat().st_uid, p.lstat().st_gid, p.lstat().st_mode,
                 p.read_bytes() if p.is_file() and not p.is_symlink() else None)
                for p in sorted([self.victim, *self.victim.rglob("*")])]


def expected_mode(mode: int, user_writable: bool, setgid_dirs: bool = True) -> int:
    """Storm's rule, restated for the tests: u=r/x kept (+w if writable), g=rw (+x, +s on dirs)."""
    want = (mode & 0o500) | 0o060 | (0o200 if user_writable else 0)
    if stat.S_ISDIR(mode):
        want |= 0o010 | (stat.S_ISGID if setgid_dirs else 0)
    return want


def snapshot(top: Path) -> dict:
    """path -> lstat of top and everything below it."""
    return {p: p.lstat() for p in [top, *top.rglob("*")]}


def make_tree(top: Path, owner: str = SUPERVISOR) -> None:
    """A small tree with varied modes, owned by `owner`."""
    (top / "sub" / "deeper").mkdir(parents=True)
    (top / "private").mkdir(mode=0o700)
    files = {"plain": 0o644, "exec": 0o755, "secret": 0o600, "none": 0o000,
             "sub/setuid": 0o4755, "sub/deeper/data": 0o640, "private/key": 0o400}
    for name, mode in files.items():
        (top / name).write_text(name)
        os.chmod(top / name, mode)
    os.chmod(top / "sub", 0o1777)
    uid = uid_of(owner)
    for path in [top, *top.rglob("*")]:
        os.lchown(path, uid, gid_of_group())


def assert_rule(before: dict, user_writable: bool, setgid_except=()) -> None:
    """Every entry of `before` (not a symlink) now belongs to USER:GROUP with Storm's mode."""
    uid, gid = uid_of(USER), gid_of_group()
    for path, old in before.items():
        now = path.lstat()
        if stat.S_ISLNK(old.st_mode):
            assert (now.st_uid, now.st_gid) == (old.st_uid, old.st_gid), path
            continue
        setgid = not any(path == p or p in path.parents for p in setgid_except)
        want = expected_mode(old.st_mode, user_writable, setgid)
        assert (now.st_uid, now.st_gid) == (uid, gid), path
        got = stat.S_IMODE(now.st_mode)
        assert got == want, f"{path}: {got:o} != {want:o}"
