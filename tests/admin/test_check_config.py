"""--check-config for admins: the runtime pieces, what to fix, and --json."""

import json
import os
import subprocess

from support.env import GROUP, SUPERVISOR

import pytest


def lines(result) -> dict:
    return {line[5:13].strip(): line for line in result.stdout.splitlines()}


def test_runtime_pieces_are_reported(launcher):
    result = launcher.run("--check-config")
    assert result.returncode == 0, result.stdout
    found = lines(result)
    for name in ("runc", "docker", "profiler", "run-root", "loop", "squashfs", "overlay", "nsenter",
                 "syslog"):
        assert name in found, name
    assert found["runc"].startswith("ok")
    assert found["profiler"].startswith("WARN")  # not configured
    assert found["nsenter"].startswith("ok   nsenter  profilers start in the worker's "
                                       "container with runc exec")


def test_missing_optional_runtime_is_a_warning(launcher):
    launcher.write_config({"docker.binary": "/nonexistent/docker"})
    result = launcher.run("--check-config")
    assert result.returncode == 0
    assert "WARN docker   /nonexistent/docker (docker.binary): No such file or directory" in result.stdout


@pytest.mark.parametrize("piece", ["profiler", "runc", "run-root"])
def test_unsafe_runtime_piece_fails_with_the_fix(launcher, piece, tmp_path):
    unsafe = launcher.prefix / f"unsafe-{piece}"
    if piece == "run-root":
        unsafe.mkdir(mode=0o777)
        os.chmod(unsafe, 0o777)
        key = "worker.launcher.oci.run-root"
    else:
        unsafe.write_text("#!/bin/sh\n")
        os.chmod(unsafe, 0o777)
        key = "worker.profiler.script.path" if piece == "profiler" else "worker.launcher.oci.runc"
    launcher.write_config({key: str(unsafe)})
    result = launcher.run("--check-config")
    assert result.returncode == 24, result.stdout
    line = lines(result)[piece]
    assert line.startswith("FAIL") and str(unsafe) in line


def test_json_form(launcher):
    result = launcher.run("--check-config", "--json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["exit"] == 0
    names = [check["name"] for check in report["checks"]]
    assert {"code", "config", "binary", "policy", "runc", "syslog"} <= set(names)
    assert report["summary"]["checks"] == len(report["checks"])
    launcher.write_config({"storm.worker-launcher.group": "no-such-group"})
    failing = launcher.run("--check-config", "--json")
    assert failing.returncode == 24
    assert json.loads(failing.stdout)["ok"] is False


def test_unknown_option_exits_1(launcher):
    result = launcher.run("--check-config", "--yaml")
    assert result.returncode == 1


def test_ignored_setuid_bit_fails(launcher):
    # no_new_privs makes the kernel ignore the setuid bit: the launcher runs as the caller
    result = subprocess.run(["setpriv", f"--reuid={SUPERVISOR}", f"--regid={GROUP}",
                             "--init-groups", "--no-new-privs", "--", str(launcher.binary),
                             "--check-config"], capture_output=True, text=True, cwd="/",
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 22, result.stdout
    assert "FAIL setuid   not running with root privileges" in result.stdout
    assert "ok   setuid   running with root privileges" in launcher.run("--check-config").stdout
