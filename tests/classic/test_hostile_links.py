"""Attackers: a topology user racing the launcher inside its own directories, and the
supervisor account planting links and swapping its script. Symlinks and hard links at every
path the launcher creates, opens, chowns or deletes; entries swapped between check and use."""

import os
import pwd
import subprocess
import textwrap
from pathlib import Path

import pytest

from support.env import PYTHON, SUPERVISOR
from support.hostile import assert_refused, supervisor_file
from support.env import USER, gid_of_group, uid_of
from support.storm import make_tree

ROUNDS = int(os.environ.get("WL_RACE_ROUNDS", "25"))
BENIGN = "#!/bin/sh\necho benign > benign.out\n"


class Racer:
    """`code` (Python, looping forever) run as `user` until stopped."""

    def __init__(self, user: str, code: str):
        entry = pwd.getpwnam(user)
        self.proc = subprocess.Popen([PYTHON, "-I", "-c", textwrap.dedent(code)],
                                     user=entry.pw_uid, group=entry.pw_gid, extra_groups=[],
                                     cwd="/", stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def racers():
    started = []
    yield lambda user, code: started.append(Racer(user, code)) or started[-1]
    for racer in started:
        racer.stop()


def _swap_loop(directory: Path, name: str, target: Path, make: str) -> str:
    """Python for a racer: keep exchanging `directory/name` (a real `make`: "file" or "dir")
    with a symlink to `target`, atomically (renameat2 RENAME_EXCHANGE)."""
    return f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        AT_FDCWD, RENAME_EXCHANGE = -100, 2
        d, name, target, make = {str(directory)!r}, {name!r}, {str(target)!r}, {make!r}
        link = name + ".link"
        while True:
            try:
                os.chmod(d, 0o770)  # the user's own directory: code-dir's u-w is undone
                os.chdir(d)
                if not os.path.lexists(name):
                    os.mkdir(name) if make == "dir" else open(name, "w").close()
                if not os.path.lexists(link):
                    os.symlink(target, link)
                for _ in range(1000):
                    libc.renameat2(AT_FDCWD, name.encode(), AT_FDCWD, link.encode(), RENAME_EXCHANGE)
            except OSError:
                pass
    """


def _user_workdir(launcher, storm):
    """A workdir after a first `artifacts-dir`: the user's, as it is while a worker runs."""
    workdir = storm.workdir()
    assert launcher.run(USER, "artifacts-dir", workdir).returncode == 0
    return workdir


@pytest.mark.parametrize("verb", ["code-dir", "artifacts-dir", "worker"])
@pytest.mark.parametrize("make", ["file", "dir"])
def test_user_swapping_entries_for_symlinks_during_set_up(launcher, storm, victims, racers,
                                                          verb, make):
    workdir = _user_workdir(launcher, storm)
    script = supervisor_file(storm.base / "script.sh", BENIGN)
    target = storm.victim / "secret" if make == "file" else storm.victim
    swapping = [racers(USER, _swap_loop(workdir, "entry", target, make)),
                racers(USER, _swap_loop(workdir, "tmp", victims.bob, "dir"))]
    before = victims.state()
    assert _planted(workdir / "entry.link", workdir / "entry")  # the race is on before we start
    for _ in range(ROUNDS):
        args = [workdir, script] if verb == "worker" else [workdir]
        result = launcher.run(USER, verb, *args)
        assert result.returncode in (0, 20, 21), result.stderr
        assert victims.state() == before
    assert all(racer.proc.poll() is None for racer in swapping)  # raced all along


def _planted(*candidates, timeout: float = 10.0) -> bool:
    """Wait until the racer (a freshly started Python) has planted one of its symlinks."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(path.is_symlink() for path in candidates):
            return True
        time.sleep(0.01)
    return False


def test_user_swapping_directories_for_symlinks_during_rmr(launcher, storm, victims, racers):
    before = victims.state()
    for round_number in range(ROUNDS):
        workdir = storm.workdir(f"rmr-{round_number}")
        make_tree(workdir, owner=USER)
        racer = racers(USER, _swap_loop(workdir / "sub", "deeper", victims.bob / "sub", "dir"))
        racers(USER, _swap_loop(workdir, "private", storm.victim, "dir"))
        result = launcher.run(USER, "rmr", workdir)
        racer.stop()
        assert result.returncode in (0, 20), result.stderr
        assert victims.state() == before


def test_hard_link_at_launch_container_sh_to_roots_file(launcher, storm, victims):
    """As with fs.protected_hardlinks=0: a link to root's file where the copy goes."""
    workdir = _user_workdir(launcher, storm)
    os.link(storm.victim / "secret", workdir / "launch_container.sh")
    before = victims.state()
    result = launcher.run(USER, "worker", workdir, supervisor_file(storm.base / "s.sh", BENIGN))
    assert_refused(result, {20})
    assert "launch_container.sh (uid 0)" in result.stderr  # left alone, reported
    assert victims.state() == before
    result = launcher.run(USER, "profiler", workdir, supervisor_file(storm.base / "s.sh", BENIGN))
    assert result.returncode == 0, result.stderr  # unlinked as the user: only the link goes
    assert victims.state() == before and (storm.victim / "secret").stat().st_nlink == 1
    assert (workdir / "launch_container.sh").read_text() == BENIGN


@pytest.mark.parametrize("verb", ["code-dir", "blob", "artifacts-dir"])
def test_hard_link_to_another_users_file_in_a_code_dir(launcher, storm, victims, verb):
    top = storm.workdir()
    make_tree(top)
    os.link(victims.bob / "data", top / "sub" / "link")
    before = victims.state()
    assert_refused(launcher.run(USER, verb, top), {20})
    assert victims.state() == before


def test_rmr_of_a_hard_link_to_roots_file_removes_only_the_link(launcher, storm, victims):
    top = storm.workdir()
    make_tree(top, owner=USER)
    os.link(storm.victim / "secret", top / "sub" / "link")
    result = launcher.run(USER, "rmr", top)
    assert result.returncode == 0, result.stderr
    assert not top.exists()
    assert (storm.victim / "secret").read_text() == "root's\n"
    assert (storm.victim / "secret").stat().st_uid == 0


def test_script_swapped_for_a_symlink_to_roots_file(launcher, storm, victims, racers):
    """The supervisor races its own script path between a benign file and a symlink to a
    file only root may read: the copy is either the benign script or nothing."""
    workdir = storm.workdir()
    base = storm.base / "scripts"
    base.mkdir()
    os.chown(base, uid_of(SUPERVISOR), gid_of_group())
    supervisor_file(base / "benign", BENIGN)
    racers(SUPERVISOR, f"""
        import os
        os.chdir({str(base)!r})
        while True:
            try:
                if os.path.lexists("l"):
                    os.unlink("l")
                os.symlink({str(storm.victim / 'secret')!r}, "l")
                os.rename("l", "script")
                os.link("benign", "b")
                os.rename("b", "script")
            except OSError:
                pass
    """)
    outcomes = set()
    for _ in range(ROUNDS):
        result = launcher.run(USER, "worker", workdir, base / "script")
        outcomes.add(result.returncode)
        assert result.returncode in (0, 30, 31), result.stderr
        copy = workdir / "launch_container.sh"
        assert not copy.exists() or copy.read_text() == BENIGN
    assert "root's" not in "".join(p.read_text() for p in workdir.rglob("*") if p.is_file())


@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "hard link to root's file",
                                  "too large", "socket"])
def test_script_that_is_not_a_readable_regular_file(launcher, storm, victims, kind):
    workdir = storm.workdir()
    script = storm.base / "script"
    if kind == "fifo":
        os.mkfifo(script)
    elif kind == "directory":
        script.mkdir()
    elif kind == "device":
        os.mknod(script, 0o600 | 0o020000, os.makedev(1, 5))  # like /dev/zero
    elif kind == "hard link to root's file":
        os.link(storm.victim / "secret", script)
    elif kind == "too large":
        with open(script, "wb") as handle:
            handle.truncate(17 * 1024 * 1024)
    else:
        import socket

        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(script))
        sock.close()
    if kind != "hard link to root's file":
        os.lchown(script, uid_of(SUPERVISOR), gid_of_group())
        os.chmod(script, 0o660)
    before = victims.state()
    result = launcher.run(USER, "worker", workdir, script, timeout=20)
    assert_refused(result, {30, 31})
    assert victims.state() == before
    assert not (workdir / "launch_container.sh").exists()


def test_without_a_policy_only_the_supervisors_or_users_entries(launcher, storm, victims):
    """No policy: the launcher does not know the storm directories, so a directory verb
    acts only on an entry of the supervisor account's (or of the user's): never on another
    user's directory or one of root's the supervisor can merely name."""
    launcher.write_config()  # the default config: no policy
    before = victims.state()
    for verb in ("code-dir", "artifacts-dir", "blob"):
        for target in (victims.bob, victims.bob / "data", storm.victim, victims.root_only):
            assert_refused(launcher.run(USER, verb, target), {5})
    assert victims.state() == before
    own = storm.workdir("own")
    make_tree(own)
    assert launcher.run(USER, "code-dir", own).returncode == 0
    assert launcher.run(USER, "code-dir", own).returncode == 0  # now the user's: again fine
    assert own.stat().st_uid == uid_of(USER)


def test_root_owned_entries_below_the_storm_directories_are_not_given_away(launcher, storm,
                                                                          victims):
    """With a policy too: an entry of root's (or another account's) below storm.local.dir
    is not the supervisor's to give to a user."""
    for owner in (0, uid_of("wlbob")):
        top = storm.local / f"owned-by-{owner}"
        top.mkdir(mode=0o755)
        (top / "file").write_text("theirs\n")
        for path in (top, top / "file"):
            os.chown(path, owner, owner)
        before = [(p.lstat().st_uid, p.lstat().st_mode) for p in (top, top / "file")]
        for verb in ("code-dir", "artifacts-dir", "blob"):
            assert_refused(launcher.run(USER, verb, top), {5})
        assert_refused(launcher.run(USER, "worker", top, supervisor_file(storm.base / "s", BENIGN)),
                       {5})
        assert [(p.lstat().st_uid, p.lstat().st_mode) for p in (top, top / "file")] == before
