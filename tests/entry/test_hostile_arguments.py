"""Attacker: the supervisor account, through argv. Path traversal, shell characters, option
injection and odd sizes in every id and path argument of the classic verbs; argc 0."""

import os
import subprocess
import textwrap

import pytest

from support.env import GROUP, PYTHON, SUPERVISOR
from support.hostile import assert_one_line, assert_refused, supervisor_file
from support.env import USER

SHELL = ["$(touch {marker})", "`touch {marker}`", "x; touch {marker}", "x && touch {marker}",
         "x | touch {marker}", "x\ntouch {marker}", "'\"$IFS*?[", "${{IFS}}touch${{IFS}}{marker}"]
OPTIONS = ["-rf", "--help", "--check-config", "-", "--", "--user=root"]


def hostile_paths(storm, victims) -> list:
    """Paths that lead, or look as if they lead, outside the storm directories."""
    local, victim = storm.local, storm.victim
    return [
        f"{local}/../victim", f"{local}/workers/../../victim/secret", f"{local}/./workers",
        f"{local}/workers/..", "../../../../etc", "workers/wid", ".", "..", "/", "//", "",
        " ", f"{victim}", f"{victim}/secret", f"{victims.bob}", f"{victims.bob}/data",
        f"/proc/self/root{victim}", f"/proc/self/cwd/{victim}", "/etc", "/etc/shadow",
        f"{local}/\n{victim}", f"{local}/x\x1b[2J", f"{victim}/", f"{local}//..//victim",
        "~root", "~", "*", f"{local}/*", "/dev/null", "/proc/1/root",
    ] + [s.format(marker=victims.marker) for s in SHELL] + OPTIONS


def attempts(storm, victims, verb: str, position: int, good: list) -> list:
    """argv lists with a hostile value at `position`, the other arguments valid."""
    rows = []
    for value in hostile_paths(storm, victims):
        args = list(good)
        args[position] = value
        rows.append([USER, verb, *args])
    return rows


def _valid_args(storm):
    workdir = storm.workdir()
    script = supervisor_file(storm.base / "script.sh", "#!/bin/sh\ntouch ran.out\n")
    return workdir, {"code-dir": [workdir], "artifacts-dir": [workdir], "blob": [workdir],
                     "rmr": [workdir], "worker": [workdir, script], "profiler": [workdir, script]}


@pytest.mark.parametrize("verb, position", [("code-dir", 0), ("artifacts-dir", 0), ("blob", 0),
                                            ("rmr", 0), ("worker", 0), ("worker", 1),
                                            ("profiler", 0), ("profiler", 1)])
def test_hostile_path_arguments(launcher, storm, victims, verb, position):
    workdir, valid = _valid_args(storm)
    before = victims.state()
    for argv in attempts(storm, victims, verb, position, valid[verb]):
        result = launcher.run(*argv, timeout=20)
        if result.returncode == 0:
            # Only harmless readings may succeed: rmr of a missing path, or a relative
            # script name, which is opened from "/" with the supervisor's rights.
            assert verb == "rmr" or (position == 1 and not argv[-1].startswith("/")), argv
        else:
            assert_refused(result)
        assert victims.state() == before, argv
        assert not victims.marker.exists(), argv
        assert not (workdir.parent / "ran.out").exists() and not os.path.exists("/ran.out")


@pytest.mark.parametrize("value", ["../root", "root", "wlalice/../root", "wlalice;id", "$(id)",
                                   "wlalice\n", "-u", "--user", "", " wlalice", "WLALICE",
                                   "0", "2001", "#2001", "wlalice:root", "+wlalice",
                                   "wl" + "a" * 300, "\u0131root", "wlbanned", "wllow", "wloutsider$x"])
def test_hostile_user_names_exit_2(launcher, storm, victims, value):
    before = victims.state()
    result = launcher.run(value, "code-dir", storm.workdir())
    assert_refused(result, {2})
    assert victims.state() == before


@pytest.mark.parametrize("value", ["../code-dir", "code-dir;id", "CODE-DIR\n", "code-dir ",
                                   "$(touch x)", "-h", "codedir", "c\u00f6de-dir", "\u212aill"])
def test_hostile_command_names_exit_3(launcher, value):
    assert_refused(launcher.run(USER, value, "/tmp"), {3})


def test_pid_and_signal_arguments_with_shell_characters(launcher, victims):
    for pid, sig in (("1;id", "9"), ("$(id)", "9"), ("1 2", "9"), ("0x1", "9"), ("1e3", "9"),
                     ("\u0661", "9"), ("1", "9;id"), ("1", "-9"), ("-1", "9"), ("+-1", "9")):
        result = launcher.run(USER, "signal", pid, sig)
        assert_refused(result, {1, 8, 9})
    assert not victims.marker.exists()


def test_too_many_arguments(launcher):
    result = launcher.run(USER, "code-dir", *["/x"] * 5000)
    assert result.returncode == 1
    assert_one_line(result.stderr)
    assert "too many arguments" in result.stderr


def test_wrong_argument_count_prints_usage_and_one_error_line(launcher, storm):
    result = launcher.run(USER, "worker", storm.workdir())
    assert result.returncode == 1 and result.stdout.startswith("Usage: ")
    assert_one_line(result.stderr)


@pytest.mark.parametrize("where", ["user", "command", "path"])
def test_largest_single_argument(launcher, storm, where):
    """The kernel caps one argument at 128 KiB (MAX_ARG_STRLEN); the error line stays short."""
    big = "a" * (128 * 1024 - 1)
    argv = {"user": [big, "code-dir", "/x"], "command": [USER, big, "/x"],
            "path": [USER, "code-dir", f"{storm.local}/{big[len(str(storm.local)) + 1:]}"]}[where]
    result = launcher.run(*argv)
    assert_refused(result, {2, 3, 5, 12, 21})


def test_a_mebibyte_of_arguments(launcher, storm):
    result = launcher.run(USER, "code-dir", *["b" * (128 * 1024 - 1)] * 8)
    assert_refused(result, {1})
    assert "takes 1 arguments, got 8" in result.stderr


def test_argc_zero_with_a_hostile_environment(launcher, tmp_path):
    marker = tmp_path / "ran"
    os.chmod(tmp_path, 0o777)
    code = textwrap.dedent(f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        argv = (ctypes.c_char_p * 1)(None)
        env = [b"PYTHONSTARTUP=/dev/null", b"PYTHONINSPECT=1", b"LD_PRELOAD=/nonexistent.so",
               b"PYTHONPATH={tmp_path}", None]
        envp = (ctypes.c_char_p * len(env))(*env)
        libc.execve(b"{launcher.binary}", argv, envp)
        os._exit(99)
    """)
    (tmp_path / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w')\n")
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True,
                            user=SUPERVISOR, group=GROUP, extra_groups=[GROUP], timeout=30)
    assert result.returncode == 1 and "Usage: worker-launcher" in result.stdout
    assert result.stderr == "" and not marker.exists()


def test_control_characters_in_a_path_cannot_forge_log_lines(launcher, storm):
    forged = "worker-launcher: all is well"
    result = launcher.run(USER, "code-dir", f"{storm.local}/nope\n{forged}\r\x1b[1A")
    assert_refused(result, {21})
    assert "\\n" in result.stderr and "\\x1b" in result.stderr
