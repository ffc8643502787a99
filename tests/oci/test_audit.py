"""The audit line of the OCI verbs (Storm's names and ours) for a success, an invalid
request, a policy refusal and a failure, with a real syslog socket."""

import os

import pytest

from support.env import SUPERVISOR, USER, uid_of
from support.layerlock import LayerLock
from support.syslog import one_logged

CALLER = {"CALLER": SUPERVISOR, "UID": str(uid_of(SUPERVISOR)), "USER": USER}


def logged(receiver, marker: str, **wanted) -> dict:
    return one_logged(receiver, marker, dict(CALLER, **wanted))


def launch(receiver, oci, worker, command="run-oci-container"):
    """Storm's call: [L, user, run-oci-container, W, W/oci-config.json, W/artifacts]."""
    return receiver.run(oci.launcher, USER, command, worker.workdir, worker.write(),
                        worker.workdir / "artifacts")


def test_launch_and_reap(oci, receiver):
    worker = oci.new_worker("sleep 300\n")
    result = launch(receiver, oci, worker)
    assert result.returncode == 0, result.stderr
    found = logged(receiver, worker.container_id, command="run-oci-container", verb="runc-run",
                   outcome="ok", exit=0, child="runc run:0", container=worker.container_id,
                   layers=",".join(map(str, oci.layers)))
    assert found["ARGS"] == f"{worker.workdir} {worker.config} {worker.workdir}/artifacts"
    assert list(found)[-4:] == ["CHILD", "CONTAINER", "LAYERS", "ARGS"]
    result = receiver.run(oci.launcher, USER, "reap-layers", worker.container_id, 0)
    assert result.returncode == 0, result.stderr
    logged(receiver, worker.container_id, command="reap-layers", verb="reap-layers",
           outcome="ok", exit=0, child="runc delete:0", container=worker.container_id,
           args=f"{worker.container_id} 0")


def test_invalid_request_is_refused(oci, receiver):
    worker = oci.new_worker()
    path = worker.write(b"{not json")
    result = receiver.run(oci.launcher, USER, "runc-run", worker.workdir, path,
                          worker.workdir / "artifacts")
    assert result.returncode == 24
    found = logged(receiver, str(path), command="runc-run", verb="runc-run", outcome="refused",
                   exit=24)
    assert "is not valid JSON" in found["ERROR"]


@pytest.mark.parametrize("source, mode, fragment", [
    ("/etc/shadow", "ro", "not allowed"), ("/etc", "rw", "may not be writable"),
], ids=["outside-policy", "system-dir-writable"])
def test_policy_refusal_is_told_apart(oci, receiver, source, mode, fragment):
    worker = oci.new_worker()
    worker.request["ociRuntimeConfig"]["mounts"].append(
        {"destination": source, "type": "bind", "source": source,
         "options": [mode, "rbind", "rprivate"]})
    result = launch(receiver, oci, worker)
    assert result.returncode == 24
    found = logged(receiver, worker.container_id, verb="runc-run", outcome="refused(policy)",
                   exit=24)
    assert fragment in found["ERROR"]


def failing_runc(oci) -> str:
    path = oci.launcher.prefix / "bin" / "failing-runc"
    path.write_text("#!/bin/sh\ncase \"$1\" in run) echo broken >&2; exit 3;; esac\nexit 0\n")
    os.chmod(path, 0o755)
    return str(path)


def test_failures_are_failed(oci, receiver):
    oci.launcher.write_config({
        "worker.launcher.policy": str(oci.launcher.conf.parent / "policy.yaml"),
        "worker.launcher.oci.runc": failing_runc(oci),
        "worker.launcher.oci.lock-timeout": "1"})
    worker = oci.new_worker()
    result = launch(receiver, oci, worker)
    assert result.returncode == 44
    found = logged(receiver, worker.container_id, verb="runc-run", outcome="failed", exit=44,
                   child="runc run:3,runc delete:0")
    assert "runc run" in found["ERROR"]

    lock = LayerLock(oci.run_root).hold()  # a holder that never lets go
    try:
        result = receiver.run(oci.launcher, USER, "reap-oci-container", worker.container_id, 0)
    finally:
        lock.close()
    assert result.returncode == 45
    found = logged(receiver, worker.container_id, command="reap-oci-container",
                   verb="reap-layers", outcome="failed", exit=45)
    assert "timed out after 1 s waiting for the layer lock" in found["ERROR"]


def test_invalid_container_id_is_refused(oci, receiver):
    result = receiver.run(oci.launcher, USER, "reap-oci-container", "6700-../../etc", 0)
    assert result.returncode == 41
    logged(receiver, "6700-../../etc", verb="reap-layers", outcome="refused", exit=41)
