"""The profile verbs' pure parts: Storm's command-file bytes, the process.json runc gets,
runc's state and docker inspect's answer as identification."""

import errno
import os
import subprocess
import time

import pytest

from worker_launcher.classic import profiler
from worker_launcher.core.errors import ExitCode, LauncherError
from worker_launcher.core.identity import Identity
from worker_launcher.core.tokens import split_arguments
from worker_launcher.docker import profile as docker_profile

DIR = "/opt/storm/logs/workers-artifacts/topo-1-1700000000/6700"
WID = "7c3c1f2e-2d0c-4a61-9d4b-8c5f7a1e2b3c"
CID = "ab" * 32


@pytest.mark.parametrize("data, arguments", [
    # BasicContainer.mkProfileCommand joined by StringUtils.join with profileCmd = "" (E3)
    (f" 42 jstack {DIR}".encode(), ["42", "jstack", DIR]),
    (f" 42 jmap {DIR}".encode(), ["42", "jmap", DIR]),
    (f" 42 dump {DIR}".encode(), ["42", "dump", DIR]),
    (f" 42 stop {DIR}".encode(), ["42", "stop", DIR]),
    (b" 42 start", ["42", "start"]),
    (b" 42 kill", ["42", "kill"]),
    # an empty pid (worker.pid not written yet) still joins to something Storm sends
    (b"  jstack /a", ["jstack", "/a"]),
    # written by hand: no leading space, a trailing newline
    (b"42 jstack /a\n", ["42", "jstack", "/a"]),
    (b"42   jstack   /a  ", ["42", "jstack", "/a"]),
    (b"1 x /a/b-c_d.e+f,g=h:i@j%k", ["1", "x", "/a/b-c_d.e+f,g=h:i@j%k"]),
])
def test_storms_bytes_are_accepted(data, arguments):
    assert split_arguments(data, "profile.sh") == arguments


@pytest.mark.parametrize("data, why", [
    (b"", "no arguments"), (b" ", "no arguments"), (b"   \n", "no arguments"),
    (b" 42 jstack /a\n\n", "control character"), (b" 42\tjstack", "control character"),
    (b" 42 jstack /a\r\n", "control character"), (b" 42 jstack\x00/a", "control character"),
    (b" 42 jstack /a\x1b[2J", "control character"), (b" 42 \xc3\xa9", "not ASCII"),
    (b" 42 jstack /a;id", "';'"), (b" 42 jstack $(id)", "'$'"), (b" 42 `id`", "'`'"),
    (b" 42 jstack /a|sh", "'|'"), (b" 42 jstack /a&", "'&'"), (b" 42 jstack >/etc/x", "'>'"),
    (b" 42 jstack /a*", "'*'"), (b" 42 jstack ~root", "'~'"), (b" 42 'jstack'", '"\'"'),
    (b" 42 jstack /a\\b", "'\\\\' in"), (b" 42 jstack #x", "'#'"),
    (b" " + b"a " * 65, "more than 64"),
])
def test_anything_else_is_refused_with_31(data, why):
    with pytest.raises(LauncherError) as caught:
        split_arguments(data, "profile.sh")
    assert caught.value.code == ExitCode.CANNOT_READ_FILE
    assert "profile.sh" in caught.value.message and why in caught.value.message


def test_process_spec_is_the_users_confinement():
    who = Identity(2001, 2001, (2001, 2100))
    spec = profiler.process_spec(who, [2100], ["/opt/storm/bin/flight.bash", "42", "start"],
                                 [("RLIMIT_NOFILE", 77, 4096), ("RLIMIT_FSIZE", -1, -1)])
    assert spec == {
        "terminal": False,
        "user": {"uid": 2001, "gid": 2001, "additionalGids": [2100], "umask": 0o027},
        "args": ["/opt/storm/bin/flight.bash", "42", "start"],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"],
        "cwd": "/",
        "capabilities": {"bounding": [], "effective": [], "inheritable": [], "permitted": [],
                         "ambient": []},
        "noNewPrivileges": True,
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 77},
                    {"type": "RLIMIT_FSIZE", "hard": 2 ** 64 - 1, "soft": 2 ** 64 - 1}],
    }


def test_rlimit_names_follow_linux_numbers():
    import resource

    for number, name in enumerate(profiler.RLIMIT_NAMES):
        if hasattr(resource, name):
            assert getattr(resource, name) == number, name


@pytest.mark.parametrize("state, problem", [
    ({"status": "running", "pid": 42, "bundle": "/run/wl/c"}, None),
    ({"status": "stopped", "pid": 0, "bundle": "/run/wl/c"}, "'stopped', not running"),
    ({"status": "paused", "pid": 42, "bundle": "/run/wl/c"}, "'paused', not running"),
    ({"status": "running", "pid": 43, "bundle": "/run/wl/c"}, "init is pid 43, not 42"),
    ({"status": "running", "pid": 42, "bundle": "/elsewhere"}, "bundle is '/elsewhere'"),
    (None, "runc does not know it"), ([], "runc does not know it"),
])
def test_runc_state_must_show_the_init_running(state, problem):
    found = profiler.state_problem(state, 42, "/run/wl/c")
    assert found == problem if problem is None else problem in found


def _inspected(**changes):
    info = {"Id": CID, "Name": f"/{WID}", "Config": {"User": "2001:2001"},
            "State": {"Status": "running", "Running": True, "Paused": False,
                      "Restarting": False, "Pid": 4242}}
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            info[outer] = dict(info[outer], **{inner: value})
        else:
            info[key] = value
    return [info]


def test_docker_worker_of_the_user_is_found():
    assert docker_profile.container_facts(_inspected(), WID, 2001, 2001, "wlalice") == (CID, 4242)


@pytest.mark.parametrize("document, why", [
    ([], "one container"), (_inspected() * 2, "one container"), ({"Id": CID}, "one container"),
    (_inspected(Id="short"), "describe a container"), (_inspected(State=None), "describe"),
    (_inspected(Name="/other"), "named '/other'"), (_inspected(Name=WID), f"named '{WID}'"),
    (_inspected(**{"Config.User": "2002:2002"}), "runs as '2002:2002', not as wlalice"),
    (_inspected(**{"Config.User": "2001"}), "runs as '2001'"),
    (_inspected(**{"Config.User": ""}), "runs as ''"),
    (_inspected(**{"Config.User": "0:0"}), "runs as '0:0'"),
    (_inspected(**{"State.Running": False, "State.Status": "exited"}), "'exited', not running"),
    (_inspected(**{"State.Paused": True}), "not running"),
    (_inspected(**{"State.Restarting": True}), "not running"),
    (_inspected(**{"State.Pid": 0}), "no init pid"), (_inspected(**{"State.Pid": 1}), "no init"),
    (_inspected(**{"State.Pid": True}), "no init pid"), (_inspected(**{"State.Pid": "42"}), "no"),
])
def test_anything_but_the_users_running_worker_is_refused(document, why):
    with pytest.raises(LauncherError) as caught:
        docker_profile.container_facts(document, WID, 2001, 2001, "wlalice")
    assert caught.value.code == ExitCode.INVALID_CONTAINER_PID
    assert why in caught.value.message


def test_without_pidfd_a_proc_directory_stands_for_the_process(monkeypatch):
    """Kernels before 5.3 (RHEL 8) have no pidfd_open: /proc/<pid> held open stays with
    that process, and shows its exit."""
    def no_pidfd(pid):
        raise OSError(errno.ENOSYS, "Function not implemented")

    child = subprocess.Popen(["sleep", "0.2"])
    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    handle = profiler.open_pidfd(child.pid, "the test's child")
    try:
        assert not profiler.exited(handle)
        child.wait()
        time.sleep(0.05)
        assert profiler.exited(handle)
    finally:
        os.close(handle)
