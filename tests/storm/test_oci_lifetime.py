"""A slot's workers under RuncLibContainerManager, replayed against the installed setuid
launcher with Storm's exact requests (support.stormreq) and the supervisor's call order
(Slot: setup, launch, profile, kill with 15 then 9, cleanUp; then a relaunch on the same
port), on real runc from real squashfs layers. Every step's outcome is checked; all failed
checks are listed at the end.
"""

import time
from pathlib import Path

import pytest

from support import stormreq as req
from support.oci import loops_backed_by, mounted_under, runc_ids
from support.stormlife import (IMAGE_ENV, Life, Variant, alive, cgroup_dirs_named,
                               forced_cleanup, wait_for)

VARIANTS = [
    # A root-owned copy of storm.yaml as the policy; memory enforcement, the operator's
    # seccomp profile; keep 0 (Jackson then leaves reapLayerKeepCount out); a layer store
    # named by storm.oci.resources.local.dir; a cgroup parent without its leading '/'.
    Variant("policy-memory-seccomp", "oci", policy=True, memory=True, seccomp=True, keep=0,
            resources_dir=True, cgroup_parent="wltest-storm"),
    # Without a policy the launcher knows none of storm.yaml: Storm's defaults (cgroup
    # parent /storm) are what a drop-in replacement must accept.
    Variant("no-policy-memory-seccomp", "oci", policy=False, memory=True, seccomp=True,
            cgroup_parent="/storm"),
    Variant("policy-defaults", "oci", policy=True, memory=False, seccomp=False),
    Variant("no-policy-defaults", "oci", policy=False, memory=False, seccomp=False,
            cgroup_parent="/storm"),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=repr)
def test_oci_worker_lifetime(launcher, replay_image, variant):
    """Two workers of one slot: the first with a new artifacts dir, the second a relaunch
    (new worker id, same port: the artifacts dir exists, the layers are still mounted when
    the keep count allows)."""
    life = Life(launcher, variant, replay_image, port=6700 + VARIANTS.index(variant))
    ids, cgroups = [], []
    try:
        life.localize_topology()
        for generation in (1, 2):
            if generation == 2:
                life.new_worker()
            ids.append(life.worker.container_id)
            cgroups.append(life.conf.cgroup_parent() + "/" + life.worker.container_id)
            one_worker(life, launcher)
        if variant.keep:  # the node's last worker went: a reap with keep 0 (test hygiene)
            life.call(req.launcher_op(life.worker.user, "reap-oci-container", ids[-1], 0))
            life.check(loops_backed_by(life.node.layer_paths) == [],
                       "reap-oci-container <cid> 0 unmounts the unused layers")
    finally:
        forced_cleanup(launcher.run_root, life.node.layer_paths, container_ids=ids,
                       cgroups=cgroups)
        life.close()
    life.finish()


def one_worker(life, launcher):
    conf, worker, variant = life.conf, life.worker, life.node.variant
    cid = worker.container_id
    cgroup = conf.cgroup_parent() + "/" + cid
    life.container_setup()
    host_pid = launch(life)
    if host_pid is not None:
        seen = life.probe()
        life.check_worker(seen, host_pid, cgroup)
        if seen:
            life.check_mounts([(dst, writable)
                               for dst, _, writable in req.oci_mounts(conf, worker)])
        if Path("/sys/fs/cgroup/memory").is_dir():  # cgroup v1: what getMemoryUsage reads
            usage = Path(conf.memory_cgroup_root(), cid, "memory.usage_in_bytes")
            life.check(usage.exists(), "RuncLibContainerManager.getMemoryUsage's path exists",
                       usage)
        for action in ("jstack", "start"):
            life.profile(lambda: req.profile_oci_call(conf, worker, host_pid), action)
        kill(life, host_pid)
    # Slot.cleanupCurrentContainer -> Container.cleanUp -> cleanUpForRestart
    life.call(req.reap_call(conf, worker))
    life.check(cid not in runc_ids(), "reap: runc knows no such container")
    life.check(mounted_under(launcher.run_root / cid) == [], "reap: nothing mounted for it")
    life.check(not (launcher.run_root / cid).exists(), "reap: its run directory is gone")
    life.check(cgroup_dirs_named(cgroup) == [], f"reap: the cgroup {cgroup} is gone",
               cgroup_dirs_named(cgroup))
    layers = loops_backed_by(life.node.layer_paths)
    if variant.keep == 0:
        life.check(layers == [], "reap with keep 0: no loop device backs the layers", layers)
    elif host_pid is not None:
        life.check(len(layers) == len(life.node.layer_paths),
                   f"reap with keep {variant.keep}: the layers stay mounted for the next worker",
                   layers)
    life.cleanup_rmrs()
    life.check_nothing_left(cgroup)


def launch(life):
    """RuncLibContainerManager.launchWorkerProcess: saveRuncYaml, writeScript,
    oci-config.json, then run-oci-container; the host pid from the runc pid file, read by
    the supervisor through the artifacts symlink (getContainerPid)."""
    conf, worker, sup, node = life.conf, life.worker, life.supervisor, life.node
    sup.files([req.Op("write", f"{life.artifacts}/runc-{worker.container_id}.yaml",
                      req.runc_yaml(worker.image, node.image.config_hash,
                                    conf.image_config_path(node.image.config_hash)))])
    life.write_worker_script(on_term="ignore")  # a worker that needs the SIGKILL
    seccomp = node.seccomp_text if node.variant.seccomp else None
    data = req.oci_config_json(conf, worker, node.layer_paths, image_env=IMAGE_ENV,
                               seccomp=seccomp)
    sup.files([req.Op("write", req.java_file(life.workdir) + "/oci-config.json", data)])
    step = life.call(req.run_oci_container_call(conf, worker))
    if step.code != 0:
        return None
    pid_file = req.oci_pid_file(conf, worker.worker_id)
    if not life.check(sup.exists(pid_file), "the pid file Storm reads exists", pid_file):
        return None
    text = sup.read(pid_file).decode()
    first = text.split("\n")[0]
    if not life.check(first.isdigit(), "the pid file holds a pid (Long.parseLong)", text):
        return None
    host_pid = int(first)
    life.check(alive(host_pid), "areAllProcessesDead: /proc/<pid> is the user's", host_pid)
    life.check(worker.container_id in runc_ids(), "runc lists the container")
    return host_pid


def kill(life, host_pid):
    """Slot.killContainerFor (kill: signal 15, then supervisor.worker.shutdown.sleep.secs)
    and handleKill (forceKill: signal 9 while not dead)."""
    worker, conf = life.worker, life.conf
    life.call(req.signal_call(worker, host_pid, 15))
    signals = Path(life.artifacts, f"signals-{worker.worker_id}.txt")
    life.check(wait_for(signals.exists, 5), "the worker got SIGTERM (its trap ran)")
    time.sleep(conf.get("supervisor.worker.shutdown.sleep.secs"))
    life.check(alive(host_pid), "the worker ignores SIGTERM, so Storm must force-kill it")
    life.call(req.signal_call(worker, host_pid, 9))
    life.check(wait_for(lambda: not alive(host_pid), 10),
               "signal 9 killed the worker (areAllProcessesDead)", host_pid)
