"""The audit log: one syslog (authpriv) line per privileged action, like sudo."""

import os
import subprocess

import pytest

from support.env import GROUP, SUPERVISOR
from support.syslog import AUTHPRIV, NOTICE, WARNING, SyslogReceiver, parse


@pytest.fixture
def receiver(tmp_path):
    os.chmod(tmp_path, 0o755)
    log = SyslogReceiver(tmp_path)
    yield log
    log.close()


def run_logged(launcher, receiver, *args):
    argv = receiver.wrap(["setpriv", f"--reuid={SUPERVISOR}", f"--regid={GROUP}", "--init-groups",
                          "--", str(launcher.binary), *map(str, args)])
    return subprocess.run(argv, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
                          cwd="/", timeout=60)


def test_success_is_logged_once(launcher, storm, receiver):
    target = storm.local / "code"
    target.mkdir()
    os.chown(target, 1901, 1900)
    result = run_logged(launcher, receiver, "wlalice", "code-dir", target)
    assert result.returncode == 0, result.stderr
    logged = receiver.lines(str(target))
    assert len(logged) == 1
    priority, text = parse(logged[0])
    assert priority == AUTHPRIV | NOTICE
    assert "worker-launcher[" in text
    assert text.endswith(f"wlsuper(1901) : USER=wlalice ; COMMAND=code-dir ; ARGS={target} ; "
                         "OUTCOME=ok ; EXIT=0")


def test_refusal_is_logged_with_the_reason(launcher, storm, receiver):
    result = run_logged(launcher, receiver, "wlalice", "code-dir", "/etc")
    assert result.returncode == 5
    priority, text = parse(receiver.lines("ARGS=/etc ;")[0])
    assert priority == AUTHPRIV | WARNING
    assert "USER=wlalice ; COMMAND=code-dir ; ARGS=/etc ; OUTCOME=refused or failed ; EXIT=5" in text
    assert "ERROR=" in text and "/etc" in text.split("ERROR=")[1]


def test_invalid_user_is_logged(launcher, receiver):
    result = run_logged(launcher, receiver, "root", "code-dir", "/tmp/x")
    assert result.returncode == 2
    _, text = parse(receiver.lines("USER=root ; COMMAND=code-dir")[0])
    assert "EXIT=2" in text


def test_control_characters_cannot_forge_log_lines(launcher, receiver):
    run_logged(launcher, receiver, "wlalice", "rmr", "/tmp/x\nFAKE : USER=root")
    _, text = parse(receiver.lines("FAKE")[0])
    assert "\n" not in text and "/tmp/x\\nFAKE" in text


def test_help_and_check_config_log_nothing(launcher, receiver):
    assert run_logged(launcher, receiver, "--help").returncode == 0
    run_logged(launcher, receiver, "--check-config")
    assert receiver.lines("USER=--", settle=0.3) == []


def test_check_config_reports_syslog(launcher, receiver):
    result = run_logged(launcher, receiver, "--check-config")
    assert "ok   syslog   /dev/log accepts the audit log" in result.stdout


def test_exec_verb_is_logged_before_it_execs(launcher, storm, receiver, tmp_path):
    workdir = storm.workdir("audit-worker")
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    os.chmod(script, 0o755)
    result = run_logged(launcher, receiver, "wlalice", "worker", workdir, script)
    assert result.returncode == 0, result.stderr
    _, text = parse(receiver.lines(str(workdir))[0])
    assert f"COMMAND=worker ; ARGS={workdir} {script} ; OUTCOME=exec ; EXIT=0" in text
