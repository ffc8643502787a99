"""The audit log, with a real syslog socket: exactly one authpriv line per call, sudo-style
`key=value ; ` fields a security team can act on: who, for whom, which command (Storm's name
and ours), the outcome class (ok, refused, refused(policy), failed) and the exit code.
Refusals before the config is read are logged too; no value can forge a field or a line."""

import os
import signal
import stat
import subprocess
import uuid

import pytest

from support.env import SUPERVISOR, USER, uid_of
from support.hostile import supervisor_file
from support.syslog import AUTHPRIV, NOTICE, WARNING, fields, parse

CALLER = {"CALLER": SUPERVISOR, "UID": str(uid_of(SUPERVISOR))}


def one_line(receiver, marker: str) -> dict:
    """The single line logged for a call whose line holds `marker`, as fields."""
    logged = receiver.lines(marker)
    assert len(logged) == 1, logged
    priority, text = parse(logged[0])
    assert "worker-launcher[" in text
    found = fields(logged[0])
    assert priority == AUTHPRIV | (NOTICE if found["OUTCOME"] == "ok" else WARNING)
    return found


def expect(found: dict, **wanted) -> None:
    want = dict(CALLER, **{key.upper(): str(value) for key, value in wanted.items()})
    assert {key: found.get(key) for key in want} == want, found


def owned_dir(storm, name: str):
    """A directory of the supervisor's in a directory of the supervisor's (rmr removes the
    top entry with the supervisor's rights)."""
    return storm.workdir(name)


@pytest.mark.parametrize("verb", ["code-dir", "artifacts-dir", "blob", "rmr"])
def test_directory_verbs(launcher, storm, receiver, verb):
    target = owned_dir(storm, f"{verb}-target")
    result = receiver.run(launcher, USER, verb.upper() if verb == "blob" else verb, target)
    assert result.returncode == 0, result.stderr
    found = one_line(receiver, str(target))
    expect(found, user=USER, command=verb.upper() if verb == "blob" else verb, verb=verb,
           outcome="ok", exit=0, args=target)
    assert list(found)[:7] == ["CALLER", "UID", "USER", "COMMAND", "VERB", "OUTCOME", "EXIT"]
    assert "ERROR" not in found

    outside = f"/etc/audit-{uuid.uuid4()}"  # outside the storm directories
    refused = receiver.run(launcher, USER, verb, outside)
    assert refused.returncode == 5
    found = one_line(receiver, outside)
    expect(found, user=USER, command=verb, verb=verb, outcome="refused(policy)", exit=5)
    assert outside in found["ERROR"]

    relative = f"relative/{uuid.uuid4()}"
    invalid = receiver.run(launcher, USER, verb, relative)
    assert invalid.returncode == 5
    expect(one_line(receiver, relative), outcome="refused", exit=5)


def test_directory_verb_failure(launcher, storm, receiver):
    missing = storm.local / "missing"
    result = receiver.run(launcher, USER, "code-dir", missing)
    assert result.returncode == 21
    expect(one_line(receiver, str(missing)), outcome="refused", exit=21)


@pytest.fixture
def sleeper():
    """A process of the topology user, and one of root's."""
    alice = subprocess.Popen(["sleep", "60"], user=uid_of(USER), group=uid_of(USER))
    root = subprocess.Popen(["sleep", "60"])
    yield alice.pid, root.pid
    for process in (alice, root):
        process.kill()
        process.wait()


def test_signal(launcher, receiver, sleeper):
    alice, root = sleeper
    assert receiver.run(launcher, USER, "signal", alice, 0).returncode == 0
    expect(one_line(receiver, f"ARGS={alice} 0"), command="signal", verb="signal",
           outcome="ok", exit=0)
    bad = f"{alice}x"
    assert receiver.run(launcher, USER, "signal", bad, 15).returncode == 1
    expect(one_line(receiver, f"ARGS={bad} 15"), outcome="refused", exit=1)
    assert receiver.run(launcher, USER, "signal", root, 0).returncode == 8  # not hers
    found = one_line(receiver, f"ARGS={root} 0")
    expect(found, outcome="failed", exit=8)
    assert "Operation not permitted" in found["ERROR"]


def probe(storm, text: str):
    return supervisor_file(storm.base / "audit-probe.sh", text)


def test_exec_verbs_are_logged_before_they_exec(launcher, storm, receiver):
    """worker and profiler never return: logged as ok right before the exec, once."""
    workdir = storm.workdir("audit-worker")
    script = probe(storm, "#!/bin/sh\nexit 3\n")
    for verb in ("worker", "profiler"):
        result = receiver.run(launcher, USER, verb, workdir, script)
        assert result.returncode == 3, result.stderr  # the script's own status
        expect(one_line(receiver, f"COMMAND={verb} ; VERB"), user=USER, verb=verb,
               outcome="ok", exit=0, args=f"{workdir} {script}")


def test_an_exec_that_fails_is_logged_again_as_failed(launcher, storm, receiver):
    workdir = storm.workdir("audit-noexec")
    script = probe(storm, "not a script\n")  # no #!: the exec fails with ENOEXEC
    result = receiver.run(launcher, USER, "worker", workdir, script)
    assert result.returncode == 7, result.stderr
    logged = [fields(line) for line in receiver.lines(str(workdir))]
    assert [(f["OUTCOME"], f["EXIT"]) for f in logged] == [("ok", "0"), ("failed", "7")]
    assert "Exec format error" in logged[1]["ERROR"]


@pytest.mark.parametrize("argv, code, wanted", [
    (["root", "code-dir", "/tmp/x"], 2, {"user": "root", "command": "code-dir"}),
    (["wlnosuchuser", "rmr", "/tmp/x"], 2, {"user": "wlnosuchuser"}),
    (["wlbanned", "rmr", "/tmp/x"], 2, {"user": "wlbanned"}),
    (["wllow", "rmr", "/tmp/x"], 2, {"user": "wllow"}),
    ([USER, "launch-missiles", "/tmp/x"], 3, {"command": "launch-missiles"}),
    ([USER, "reap-oci-container", "x", "1", "2"], 1, {"command": "reap-oci-container",
                                                       "verb": "reap-layers"}),
])
def test_refusals_of_the_command_line(launcher, receiver, argv, code, wanted):
    marker = f"/audit-{uuid.uuid4()}"
    result = receiver.run(launcher, *argv, marker)
    assert result.returncode == code, result.stderr
    found = one_line(receiver, marker)
    expect(found, outcome="refused", exit=code, **wanted)
    assert ("VERB" in found) == ("verb" in wanted)


@pytest.mark.parametrize("argv", [[], [f"wl-{uuid.uuid4().hex[:20]}"]])
def test_a_call_without_a_command_is_logged(launcher, receiver, argv):
    result = receiver.run(launcher, *argv)
    assert result.returncode == 1 and result.stdout.startswith("Usage:")
    assert result.stderr == ""
    marker = f"USER={argv[0]} ; COMMAND= ;" if argv else "USER= ; COMMAND= ;"
    expect(one_line(receiver, marker), outcome="refused", exit=1, args="")


def test_refusals_before_the_config_is_read(launcher, storm, receiver):
    """A tampered config (24) and a binary with bad permissions (22) refuse every call, and
    each refusal is logged with what is known: caller, user, command, arguments."""
    target = owned_dir(storm, "audit-tampered")
    os.chmod(launcher.conf, 0o666)
    try:
        result = receiver.run(launcher, USER, "code-dir", target)
    finally:
        os.chmod(launcher.conf, 0o644)
    assert result.returncode == 24
    found = one_line(receiver, str(target))
    expect(found, user=USER, command="code-dir", outcome="refused", exit=24, args=target)
    assert "VERB" not in found and str(launcher.conf) in found["ERROR"]

    mode = stat.S_IMODE(launcher.binary.stat().st_mode)
    os.chmod(launcher.binary, mode | 0o001)  # others may run it
    try:
        result = receiver.run(launcher, USER, "rmr", target)
    finally:
        os.chmod(launcher.binary, mode)
    assert result.returncode == 22
    found = one_line(receiver, "COMMAND=rmr ; OUTCOME")
    expect(found, user=USER, command="rmr", outcome="refused", exit=22, args=target)
    assert "permissions" in found["ERROR"]


def test_cancelled_call_is_logged_as_failed(launcher, receiver):
    from support.layerlock import LayerLock

    lock = LayerLock(launcher.run_root).hold()
    try:
        argv = receiver.wrap(["setpriv", f"--reuid={SUPERVISOR}", "--regid=wltest",
                              "--init-groups", "--", str(launcher.binary), USER,
                              "reap-oci-container", "6700-00000000-0000-4000-8000-000000000000",
                              "1"])
        started = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, cwd="/",
                                   env={"PATH": "/usr/bin:/bin"})
        core = lock.wait_for_waiter()
        os.kill(core, signal.SIGTERM)
        started.communicate(timeout=30)
    finally:
        lock.close()
    assert started.returncode == 143
    found = one_line(receiver, "6700-00000000-0000-4000-8000-000000000000")
    expect(found, command="reap-oci-container", verb="reap-layers", outcome="failed",
           exit=143, error="cancelled by SIGTERM")


def test_control_characters_cannot_forge_fields_or_lines(launcher, receiver):
    marker = f"FAKE-{uuid.uuid4()}"
    result = receiver.run(launcher, USER, "code-dir", f"/tmp/x\n{marker} ; OUTCOME=ok ; EXIT=0\\")
    assert result.returncode == 21
    logged = receiver.lines(marker)
    assert len(logged) == 1 and "\n" not in logged[0]
    found = fields(logged[0])
    assert (found["OUTCOME"], found["EXIT"]) == ("refused", "21")
    assert found["ARGS"] == f"/tmp/x\\x0a{marker} \\x3b OUTCOME=ok \\x3b EXIT=0\\x5c"
    assert found["ERROR"] == f"path does not exist: {found['ARGS']}"


def test_help_and_check_config_log_nothing(launcher, receiver):
    assert receiver.run(launcher, "--help").returncode == 0
    receiver.run(launcher, "--check-config")
    # Other launchers on this machine may log meanwhile: look for these two commands only.
    assert receiver.lines("COMMAND=--", settle=0.3) == []


def test_check_config_reports_syslog(launcher, receiver):
    result = receiver.run(launcher, "--check-config")
    assert "ok   syslog   /dev/log accepts the audit log" in result.stdout
