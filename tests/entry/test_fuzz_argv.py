"""Random argv through the installed binary, as the supervisor account: every run ends with
one of Storm's exit codes and, on failure, one clear line (or usage); nothing of root's
changes. Each run costs ~30 ms, so few examples by default:

    WL_FUZZ_ARGV_EXAMPLES=2000 .venv/bin/python -m pytest tests/entry/test_fuzz_argv.py
"""

import os
import pwd
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from support.env import GROUP, SUPERVISOR
from support.hostile import DEFINED_CODES, assert_one_line
from worker_launcher.commands import COMMANDS

EXAMPLES = int(os.environ.get("WL_FUZZ_ARGV_EXAMPLES", "60"))
ARGV_FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                     derandomize="WL_FUZZ_ARGV_EXAMPLES" not in os.environ,
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])

VICTIM = "/opt/wl-fuzz-victim"  # root-owned, 0700: made by the fixture below
WORDS = st.sampled_from(
    [c.name for c in COMMANDS] + ["wlalice", "wlbob", "root", "wlbanned", "--help", "--check-config",
     "-h", "/", "/etc", "/etc/shadow", VICTIM, VICTIM + "/x", "..", "../..", "/tmp", "/proc/1",
     "1", "0", "-1", "9", "15", "999999999999999999999", "$(id)", "`id`", ";", "|", "&&", "\n",
     "%s%n", "\\", "*", "~", "-", "--", "CODE-DIR", "Signal", "\u212a", "\udcff"])
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
               max_size=40)
RAW = st.binary(max_size=40).map(lambda data: data.replace(b"\0", b"")).map(os.fsdecode)
ARGV = st.lists(WORDS | TEXT | RAW, max_size=7)


def _run(binary, argv):
    entry = pwd.getpwnam(SUPERVISOR)
    return subprocess.run([str(binary), *argv], capture_output=True, timeout=20,
                          user=entry.pw_uid, group=entry.pw_gid, extra_groups=[GROUP],
                          env={"PATH": "/usr/bin:/bin"}, cwd="/")


def _state():
    return [(entry.path, entry.stat(follow_symlinks=False)) for entry in os.scandir(VICTIM)] + \
        [("top", os.lstat(VICTIM))]


@pytest.fixture(scope="module")
def victim():
    shutil.rmtree(VICTIM, ignore_errors=True)
    os.mkdir(VICTIM, 0o700)
    with open(os.path.join(VICTIM, "secret"), "w") as handle:
        handle.write("root's\n")
    yield _state()
    shutil.rmtree(VICTIM, ignore_errors=True)


@ARGV_FUZZ
@given(ARGV)
def test_any_argv_gets_a_defined_code_and_one_line(launcher, victim, argv):
    before = victim
    result = _run(launcher.binary, argv)
    assert result.returncode in DEFINED_CODES, (argv, result.returncode, result.stderr)
    stderr = result.stderr.decode("utf-8", "replace")
    if result.returncode != 0 and not (result.returncode == 1 and not stderr):
        assert_one_line(stderr)
    if result.returncode == 1 and not stderr:
        assert result.stdout.startswith(b"Usage: ")
    assert _state() == before, argv
