"""Attacker: the supervisor account, through the process state it execs the launcher with:
closed or odd fds, tiny and odd rlimits (soft and hard), umask, an unreadable cwd, blocked and
ignored signals, a hostile environment. None of it may change what root does, and the worker
must start with the caller's limits and a clean signal state, nothing of the launcher's."""

import json
import os
import resource
import stat

import pytest

from support.hostile import assert_refused, run_as_supervisor, supervisor_file
from support.env import LAUNCHER_PYTHON, SUPERVISOR, USER, launcher_python_runs_as, uid_of
from support.storm import assert_rule, make_tree, snapshot

INF = -1
RESOURCES = ("NOFILE", "FSIZE", "STACK", "AS", "DATA", "CPU", "CORE")
PROBE_PY = """\
import json, os, resource
limits = {name: list(resource.getrlimit(getattr(resource, "RLIMIT_" + name)))
          for name in %r}
old = os.umask(0)
def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
print(json.dumps({"limits": limits, "env": sorted(os.environ), "umask": old,
                  "fds": [fd for fd in range(3, 256) if is_open(fd)]}))
""" % (RESOURCES,)


def _probe(storm):
    """A worker script that reports its signal state (from sh, which keeps what it was given),
    then its limits, environment, umask and fds (from Python) on stdout, a pipe: no file
    writes, so it works under RLIMIT_FSIZE 0."""
    probe_py = storm.base / "probe.py"
    probe_py.write_text(PROBE_PY)
    os.chmod(probe_py, 0o644)
    text = ("#!/bin/sh\ngrep -E '^Sig(Ign|Blk):' /proc/self/status\n"
            f"exec /usr/bin/python3 -I {probe_py}\n")
    return supervisor_file(storm.base / "probe.sh", text), text


def _set_limits(limits: dict) -> str:
    return "".join(f"resource.setrlimit(resource.RLIMIT_{name}, {tuple(value)})\n"
                   for name, value in limits.items())


HOSTILE_SIGNALS = """\
signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP})
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGXFSZ,
            signal.SIGCHLD, signal.SIGUSR1):
    signal.signal(sig, signal.SIG_IGN)
os.umask(0o777)
"""


MIB = 1 << 20
HARD_NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # the test run's: cannot be raised
# The stub's own_limits: the least hard limit it can do its work with.
LEAST_HARD = {"NOFILE": 64, "FSIZE": 64 * MIB, "STACK": MIB, "AS": 512 * MIB, "DATA": 256 * MIB,
              "CPU": 60, "CORE": 0}


def _too_small(limits: dict):
    """The first limit whose hard value is below what the launcher needs, or None."""
    return next((name for name, (_, hard) in limits.items()
                 if hard != INF and hard < LEAST_HARD[name]), None)


@pytest.mark.parametrize("limits", [
    {"FSIZE": (0, INF)}, {"FSIZE": (1, 64 * MIB)}, {"NOFILE": (16, HARD_NOFILE)}, {"NOFILE": (16, 64)},
    {"STACK": (1 * MIB, 2 * MIB)}, {"CPU": (1000, 2000)}, {"AS": (1 << 30, 2 << 30)},
    {"DATA": (1 << 30, 1 << 30)}, {"CORE": (4096, INF)}, {"CORE": (0, 0)},
    {"FSIZE": (0, 0)}, {"FSIZE": (1, 1)}, {"NOFILE": (16, 16)}, {"CPU": (1, 1)},
    {"STACK": (16384, 16384)}, {"AS": (16 * MIB, 16 * MIB)},
], ids=lambda limits: "-".join(f"{k}{v[0]}:{v[1]}" for k, v in limits.items()))
def test_worker_runs_with_the_callers_limits_or_is_refused(launcher, storm, victims, limits):
    """Soft limits are the caller's own business: the launcher works with its own and gives
    the worker the caller's back. A hard limit too small for the launcher's own work (e.g.
    RLIMIT_FSIZE 0, which would kill it with SIGXFSZ half-way) is refused before anything
    is done, with one line naming it."""
    workdir = storm.workdir()
    script, text = _probe(storm)
    before, workdir_before = victims.state(), snapshot(workdir)
    result = run_as_supervisor(launcher, [USER, "worker", workdir, script],
                               _set_limits(limits) + HOSTILE_SIGNALS + "os.open('/dev/null', 0)\n")
    too_small = _too_small(limits)
    if too_small:
        assert_refused(result, {20})
        assert f"hard RLIMIT_{too_small} of the caller" in result.stderr
        assert snapshot(workdir) == workdir_before and victims.state() == before
        return
    assert result.returncode == 0, result.stderr
    sig_lines, probe_line = result.stdout.splitlines()[:2], result.stdout.splitlines()[2]
    assert all(int(line.split()[1], 16) == 0 for line in sig_lines), sig_lines  # SigIgn, SigBlk
    probe = json.loads(probe_line)
    for name, value in limits.items():
        assert probe["limits"][name] == list(value), name
    assert set(probe["env"]) - {"PWD"} == {"LC_ALL", "PATH"}  # sh exports PWD itself
    assert probe["fds"] == [] and probe["umask"] == 0o027
    launch_file = workdir / "launch_container.sh"
    assert launch_file.read_text() == text and stat.S_IMODE(launch_file.stat().st_mode) == 0o700
    assert victims.state() == before


def test_worker_without_limits_changed_keeps_the_callers_defaults(launcher, storm):
    workdir = storm.workdir()
    script, _ = _probe(storm)
    result = run_as_supervisor(launcher, [USER, "worker", workdir, script])
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.splitlines()[2])
    for name in RESOURCES:  # the test runner's limits, inherited by the supervisor process
        assert probe["limits"][name] == list(resource.getrlimit(getattr(resource, f"RLIMIT_{name}")))


# NOFILE 4: with 0-2 taken, ld.so needs one more fd to load libc for the stub at all.
TINY_SOFT = {"NOFILE": (4, 1024), "FSIZE": (0, INF), "CPU": (1, INF), "AS": (16 * MIB, INF),
             "DATA": (MIB, INF), "STACK": (16384, INF)}
TINY_HARD = {"NOFILE": (4, 4), "FSIZE": (0, 0), "CPU": (1, 1), "AS": (16 * MIB, 16 * MIB),
             "DATA": (MIB, MIB), "STACK": (16384, 16384)}


@pytest.mark.parametrize("verb, writable", [("code-dir", False), ("artifacts-dir", True)])
def test_directory_verbs_under_tiny_soft_limits(launcher, storm, victims, verb, writable):
    top = storm.workdir()
    make_tree(top)
    before, victim_before = snapshot(top), victims.state()
    result = run_as_supervisor(launcher, [USER, verb, top], _set_limits(TINY_SOFT) + HOSTILE_SIGNALS)
    assert result.returncode == 0, result.stderr
    assert_rule(before, user_writable=writable)
    assert victims.state() == victim_before


@pytest.mark.parametrize("name", sorted(TINY_HARD))
def test_every_verb_refuses_tiny_hard_limits_before_acting(launcher, storm, victims, name):
    top = storm.workdir()
    make_tree(top)
    script, _ = _probe(storm)
    before, victim_before = snapshot(top), victims.state()
    for args in ([USER, "code-dir", top], [USER, "rmr", top], [USER, "worker", top, script],
                 [USER, "signal", "1", "0"], ["--check-config"]):
        result = run_as_supervisor(launcher, args, _set_limits({name: TINY_HARD[name]}))
        assert_refused(result, {20})
        assert f"hard RLIMIT_{name} of the caller" in result.stderr
    assert snapshot(top) == before and victims.state() == victim_before


def test_nofile_too_small_for_the_dynamic_loader_does_nothing(launcher, storm, victims):
    """RLIMIT_NOFILE 3 with fds 0-2 open: ld.so cannot open libc, so the stub never runs
    (exit 127 from ld.so); nothing is done."""
    top = storm.workdir()
    make_tree(top)
    before, victim_before = snapshot(top), victims.state()
    result = run_as_supervisor(launcher, [USER, "code-dir", top], _set_limits({"NOFILE": (3, 3)}))
    assert result.returncode in (20, 127), result.stderr
    assert snapshot(top) == before and victims.state() == victim_before


def test_refusals_under_tiny_soft_limits_are_clean(launcher, storm, victims):
    before = victims.state()
    for args in ([USER, "code-dir", storm.victim], ["wlbanned", "code-dir", storm.local],
                 [USER, "rmr", f"{storm.local}/../victim"], [USER, "signal", "1", "9"]):
        result = run_as_supervisor(launcher, args, _set_limits(TINY_SOFT) + HOSTILE_SIGNALS)
        assert_refused(result)
    assert victims.state() == before


CLOSE_STDIO = "for fd in (0, 1, 2):\n    os.close(fd)\n"


def test_closed_stdio_does_not_redirect_root_output(launcher, storm, victims, tmp_path):
    """With 0-2 closed, whatever the launcher opens first would be fd 0-2; it must write its
    error to /dev/null, not into a file it opened, and still exit with the right code."""
    top = storm.workdir()
    make_tree(top)
    before, victim_before = snapshot(top), victims.state()
    result = run_as_supervisor(launcher, [USER, "code-dir", top], CLOSE_STDIO, capture_output=False)
    assert result.returncode == 0
    assert_rule(before, user_writable=False)
    result = run_as_supervisor(launcher, [USER, "code-dir", storm.victim / "secret"], CLOSE_STDIO,
                               capture_output=False)
    assert result.returncode == 5
    assert victims.state() == victim_before


def test_inherited_fds_do_not_reach_the_worker(launcher, storm):
    workdir = storm.workdir()
    script, _ = _probe(storm)
    keep = ("fd = os.open('/', os.O_PATH)\nos.dup2(fd, 200)\nos.dup2(fd, 7)\n"
            "os.set_inheritable(200, True)\nos.set_inheritable(7, True)\n")
    result = run_as_supervisor(launcher, [USER, "worker", workdir, script], keep)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[2])["fds"] == []


@pytest.mark.parametrize("umask", [0o777, 0o000, 0o002])
def test_odd_umask_changes_no_mode(launcher, storm, umask):
    workdir = storm.workdir()
    script, _ = _probe(storm)
    result = run_as_supervisor(launcher, [USER, "worker", workdir, script], f"os.umask({umask})\n")
    assert result.returncode == 0, result.stderr
    tmp = (workdir / "tmp").lstat()
    assert (tmp.st_uid, stat.S_IMODE(tmp.st_mode)) == (uid_of(USER), 0o770)
    assert stat.S_IMODE((workdir / "launch_container.sh").lstat().st_mode) == 0o700
    assert json.loads(result.stdout.splitlines()[2])["umask"] == 0o027


def test_unreadable_cwd_and_relative_paths(launcher, storm, victims, tmp_path):
    """Started in a directory it cannot read, the launcher resolves nothing against it:
    relative paths are refused, absolute ones work as usual."""
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    (hidden / "workers").mkdir()
    workdir = storm.workdir()
    script, _ = _probe(storm)
    for args in ([USER, "code-dir", "workers"], [USER, "rmr", "workers"],
                 [USER, "worker", "workers", script]):
        assert_refused(run_as_supervisor(launcher, args, cwd=str(hidden)), {5})
    result = run_as_supervisor(launcher, [USER, "worker", workdir, script], cwd=str(hidden))
    assert result.returncode == 0, result.stderr
    assert (hidden / "workers").stat().st_uid == 0


def test_hostile_environment_reaches_neither_root_nor_the_worker(launcher, storm, tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir(mode=0o755)
    marker = tmp_path / "ran"
    os.chmod(tmp_path, 0o777)
    for name in ("sitecustomize.py", "os.py", "grp.py", "json.py"):
        (evil / name).write_text(f"open({str(marker)!r}, 'a').write('ran')\n")
    hostile = {"PYTHONPATH": str(evil), "PYTHONHOME": str(evil), "PYTHONSTARTUP": str(evil / "os.py"),
               "LD_PRELOAD": "/nonexistent/libevil.so", "LD_LIBRARY_PATH": str(evil),
               "PATH": str(evil), "BASH_ENV": str(evil / "os.py"), "ENV": str(evil / "os.py"),
               "IFS": "/", "LC_ALL": "xx_XX.EVIL", "TMPDIR": str(evil), "HOME": str(evil)}
    workdir = storm.workdir()
    script, _ = _probe(storm)
    result = run_as_supervisor(launcher, [USER, "worker", workdir, script],
                               f"os.environ.update({hostile!r})\n")
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.splitlines()[2])
    assert set(probe["env"]) - {"PWD"} == {"LC_ALL", "PATH"}
    assert not marker.exists()


def test_no_new_privs_runs_nothing_as_root(launcher, storm, victims):
    """With no_new_privs the kernel ignores the setuid bit: the core then runs as the
    supervisor account and refuses every verb before it acts (not half-way, at its first
    privileged step), with one line saying why."""
    top = storm.workdir()
    make_tree(top)
    script, _ = _probe(storm)
    before, victim_before = snapshot(top), victims.state()
    nnp = "import ctypes\nassert ctypes.CDLL(None).prctl(38, 1, 0, 0, 0) == 0\n"
    for args in ([USER, "code-dir", top], [USER, "rmr", top], [USER, "worker", top, script],
                 [USER, "signal", "1", "0"]):
        result = run_as_supervisor(launcher, args, nnp)
        if not launcher_python_runs_as(SUPERVISOR):  # the stub cannot even start Python
            assert_refused(result, {20})
            assert f"cannot execute {LAUNCHER_PYTHON}: Permission denied" in result.stderr
            continue
        assert_refused(result, {6})
        assert "not running with root privileges" in result.stderr
    assert snapshot(top) == before and victims.state() == victim_before
