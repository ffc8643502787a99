"""Shared pieces of the adversarial suite: victims, a runner for a hostile caller process,
and the assertions every attack ends with.

An attack passes when (1) every victim is exactly as before, (2) the exit code is one of
Storm's and (3) stderr is one line, `worker-launcher: ...`, without a traceback.
"""

import os
import pwd
import subprocess
import textwrap
from pathlib import Path

from support.env import GROUP, PYTHON, SUPERVISOR
from worker_launcher.core.errors import exit_code_names

DEFINED_CODES = frozenset(exit_code_names().values())
VICTIM_USER = "wlbob"


def assert_refused(result, codes=None) -> None:
    """A clean refusal: a defined (or the expected) non-zero code, one line, no traceback."""
    allowed = set(codes) if codes is not None else DEFINED_CODES - {0}
    assert result.returncode in allowed, (result.returncode, result.stderr)
    assert_one_line(result.stderr)


def assert_one_line(stderr: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("worker-launcher: "), stderr
    assert "Traceback" not in stderr and len(lines[0]) < 1200, stderr[:300]


class Victims:
    """Things no attack may change: root's directory (storm.victim), a directory of another
    user (wlbob), and `marker`, a file in a root-only directory that only root could create."""

    def __init__(self, storm):
        self.storm = storm
        self.bob = storm.base / "bob"
        self.bob.mkdir(mode=0o755)
        (self.bob / "data").write_text("bob's\n")
        (self.bob / "sub").mkdir()
        (self.bob / "sub" / "deep").write_text("bob's too\n")
        bob = pwd.getpwnam(VICTIM_USER)
        for path in (self.bob, self.bob / "data", self.bob / "sub", self.bob / "sub" / "deep"):
            os.chown(path, bob.pw_uid, bob.pw_gid)
        self.root_only = storm.base / "root-only"
        self.root_only.mkdir(mode=0o755)
        self.marker = self.root_only / "pwned"

    def state(self) -> list:
        tops = (self.storm.victim, self.bob, self.root_only)
        return [(str(p), st.st_ino, st.st_uid, st.st_gid, st.st_mode,
                 p.read_bytes() if p.is_file() and not p.is_symlink() else None)
                for p in sorted(q for top in tops for q in [top, *top.rglob("*")])
                for st in [p.lstat()]]


def run_as_supervisor(launcher, args, prelude: str = "", timeout: float = 60, cwd: str = "/",
                      **kwargs):
    """Run the installed binary from a hostile supervisor process: `prelude` (Python) runs
    first as the supervisor account (close fds, set rlimits, block signals...), then execs
    the launcher with `args`. `cwd` is entered as root first, so it may be one the
    supervisor cannot read. Returns CompletedProcess (text)."""
    kwargs.setdefault("capture_output", True)
    return subprocess.run(*_supervisor_argv(launcher, args, prelude), cwd=cwd, timeout=timeout,
                          **_supervisor_kwargs(kwargs))


def start_as_supervisor(launcher, args, prelude: str = "", cwd: str = "/", **kwargs):
    """As run_as_supervisor, without waiting: the Popen (its pid is the launcher's)."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(*_supervisor_argv(launcher, args, prelude), cwd=cwd,
                            **_supervisor_kwargs(kwargs))


def _supervisor_argv(launcher, args, prelude: str) -> list:
    code = textwrap.dedent("""\
        import os, resource, signal, sys
        binary, args = sys.argv[1], sys.argv[2:]
        """) + textwrap.dedent(prelude) + "\nos.execv(binary, [binary, *args])\n"
    return [[PYTHON, "-I", "-c", code, str(launcher.binary), *map(str, args)]]


def _supervisor_kwargs(kwargs: dict) -> dict:
    entry = pwd.getpwnam(SUPERVISOR)
    kwargs.setdefault("text", True)
    return dict(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[GROUP],
                env={"PATH": "/usr/bin:/bin"}, **kwargs)


def supervisor_file(path: Path, text: str, mode: int = 0o640) -> Path:
    """A file of the supervisor account's, as Storm writes its scripts."""
    from support.env import gid_of_group, uid_of

    path.write_text(text)
    os.chown(path, uid_of(SUPERVISOR), gid_of_group())
    os.chmod(path, mode)
    return path
