"""OCI runtime under concurrency: launches and reaps interleaved on shared layers, and a
failed launch whose undo must not pull layers from under a container that started meanwhile."""

import hashlib
import os
import threading
import time
from pathlib import Path

from support.layerlock import LayerLock
from support.oci import assert_nothing_left, loops_backed_by, mounted_under, runc_binary, runc_ids

UP = "echo up > $WORKDIR/up.out\nsleep 300\n"


def layer_mounts(oci) -> set:
    """The layer mount points of the test image that are mounted now."""
    wanted = {f"{oci.run_root}/layers/{hashlib.sha256(str(layer).encode()).hexdigest()}/mnt"
              for layer in oci.layers}
    return wanted & set(mounted_under(oci.run_root))


def assert_clean(oci, workers):
    assert_nothing_left(oci, *workers)


def run_all(jobs) -> dict:
    """Run (name, function) pairs in threads at once; name -> CompletedProcess."""
    results = {}

    def one(name, function):
        results[name] = function()

    threads = [threading.Thread(target=one, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert len(results) == len(jobs), "a launch or reap did not finish (deadlock?)"
    return results


def test_launches_and_reaps_interleaved_on_shared_layers(oci):
    first = [oci.new_worker(UP, port=6700 + i) for i in range(4)]
    results = run_all([(w.container_id, w.launch) for w in first])
    assert all(r.returncode == 0 for r in results.values()), results
    second = [oci.new_worker(UP, port=6710 + i) for i in range(4)]
    jobs = [(w.container_id, w.launch) for w in second]
    jobs += [(w.container_id, lambda w=w: w.reap(keep=0)) for w in first]
    results = run_all(jobs)
    failures = {name: r.stderr for name, r in results.items() if r.returncode != 0}
    assert not failures
    for worker in second:
        assert worker.wait_for("up.out") == "up\n"
        assert worker.container_id in runc_ids()
    assert len(layer_mounts(oci)) == 3  # reaps with keep 0 left the layers in use alone
    assert len(loops_backed_by(oci.layers)) == 3  # shared, never attached twice
    results = run_all([(w.container_id, lambda w=w: w.reap(keep=0)) for w in second])
    assert all(r.returncode == 0 for r in results.values()), results
    assert_clean(oci, first + second)


def slow_failing_runc(oci) -> Path:
    """runc whose `run` fails after 2 s for port 6799 containers and is the real runc otherwise."""
    path = oci.launcher.prefix / "bin" / "slow-failing-runc"
    path.write_text("#!/bin/sh\n"
                    'case "$1 $*" in run*" 6799-"*) sleep 2; echo broke >&2; exit 3;; esac\n'
                    f'exec {runc_binary()} "$@"\n')
    os.chmod(path, 0o755)
    return path


def test_the_lock_is_shared_to_look_and_exclusive_only_to_unmount(oci):
    """While another holds the layer lock shared (a launch standing its overlay on the
    layers): a launch of mounted layers and a reap with nothing to unmount (keep 100) go on
    without waiting; a reap that must unmount a layer waits for it exclusive, up to the lock
    timeout (then exit 45 naming the lock), and goes on once it is free."""
    values = {"worker.launcher.policy": str(oci.launcher.conf.parent / "policy.yaml"),
              "worker.launcher.oci.lock-timeout": "2"}
    oci.launcher.write_config(values)
    first, second = oci.new_worker(UP), oci.new_worker(UP, port=6701)
    assert first.launch().returncode == 0  # mounts the layers
    lock = LayerLock(oci.run_root).hold(shared=True)
    try:
        started = time.monotonic()
        launched = second.launch()
        assert launched.returncode == 0, launched.stderr
        assert second.wait_for("up.out") == "up\n"
        reaped = first.reap(keep=100)
        assert reaped.returncode == 0, reaped.stderr
        assert time.monotonic() - started < 2
        assert len(layer_mounts(oci)) == 3
        reaped = second.reap(keep=0)  # its layers are unused once it is gone: to unmount
        assert reaped.returncode == 45
        assert "timed out after 2 s waiting for the layer lock" in reaped.stderr
        assert second.container_id not in runc_ids()  # its own container went, lock or not
        assert not (oci.run_root / second.container_id).exists()
    finally:
        lock.close()
    assert second.reap(keep=0).returncode == 0
    assert layer_mounts(oci) == set()
    assert_clean(oci, [first, second])


def test_failed_launch_keeps_layers_a_newer_container_stands_on(oci):
    oci.launcher.write_config({
        "worker.launcher.policy": str(oci.launcher.conf.parent / "policy.yaml"),
        "worker.launcher.oci.runc": str(slow_failing_runc(oci))})
    failing, survivor = oci.new_worker(UP, port=6799), oci.new_worker(UP, port=6700)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(failed=failing.launch()))
    thread.start()
    deadline = time.monotonic() + 20
    while len(layer_mounts(oci)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)  # the failing launch mounted the layers and sits in runc
    assert len(layer_mounts(oci)) == 3
    launched = survivor.launch()  # reuses the layers the failing launch mounted
    thread.join(60)
    assert launched.returncode == 0, launched.stderr
    assert outcome["failed"].returncode == 44, outcome["failed"].stderr
    assert survivor.wait_for("up.out") == "up\n"
    assert len(layer_mounts(oci)) == 3  # the undo left the survivor's layers mounted
    later = oci.new_worker(UP, port=6701)
    assert later.launch().returncode == 0
    assert len(loops_backed_by(oci.layers)) == 3  # ... so a later launch shares them too
    for worker in (survivor, later):
        assert worker.reap(keep=0).returncode == 0
    assert failing.reap(keep=0).returncode == 0
    assert_clean(oci, [failing, survivor, later])
