"""The pure parts of the operator options: option parsing, key judgement, unusable verbs,
and --list-state's reading of mountinfo and a run root (a fake one, no root needed)."""

import pytest

from worker_launcher.admin import checks, keys, options, state
from worker_launcher.core import policy
from worker_launcher.core.errors import LauncherError
from worker_launcher.oci import mountinfo


@pytest.mark.parametrize("argv, parsed", [
    (["--check-config"], ("check", False, [])),
    (["--json", "--check-config"], ("check", True, [])),
    (["--check-config", "a.cfg", "--json", "p.yaml"], ("check", True, ["a.cfg", "p.yaml"])),
    (["--checksetup"], ("check", False, [])),
    (["--check-config", "--", "-odd.cfg"], ("check", False, ["-odd.cfg"])),
    (["--list-state", "--json"], ("state", True, [])),
    (["--version"], ("version", False, [])),
])
def test_options_parse(argv, parsed):
    assert options.parse(argv) == parsed


@pytest.mark.parametrize("argv", [["--json"], ["--check-config", "--version"], ["--list-state", "x"],
                                  ["--check-config", "a", "b", "c"], ["--check-config", "--yaml"]])
def test_bad_options_exit_1(argv):
    with pytest.raises(LauncherError) as raised:
        options.parse(argv)
    assert raised.value.code == 1


# Keys of a real storm.yaml (Storm 2.x names): none is a mistake for the policy.
STORM_KEYS = """storm.zookeeper.servers storm.zookeeper.port storm.local.hostname storm.log.dir
storm.local.dir storm.home storm.workers.artifacts.dir nimbus.seeds nimbus.thrift.port ui.port
supervisor.slots.ports supervisor.childopts supervisor.run.worker.as.user
supervisor.worker.launcher supervisor.worker.start.timeout.secs worker.childopts
worker.heap.memory.mb worker.gc.childopts worker.profiler.enabled worker.profiler.command
worker.profiler.childopts worker.log.level.reset.poll.secs topology.workers topology.oci.image
storm.resource.isolation.plugin storm.resource.isolation.plugin.enable
storm.cgroup.hierarchy.dir storm.cgroup.resources storm.cgroup.memory.enforcement.enable
storm.oci.cgroup.root storm.oci.cgroup.parent storm.oci.nscd.dir storm.oci.image
storm.oci.allowed.images storm.oci.readonly.bindmounts storm.oci.readwrite.bindmounts
storm.oci.seccomp.profile storm.oci.image.hdfs.toplevel.dir storm.oci.layer.mounts.to.keep
storm.oci.image.tag.to.manifest.plugin storm.oci.manifest.to.resources.plugin
storm.oci.resources.localizer storm.oci.resources.local.dir java.library.path
logviewer.port drpc.servers storm.disable.symlinks""".split()


def test_storm_keys_are_no_mistake():
    unread = [key for key in STORM_KEYS if key not in keys.POLICY_KEYS]
    assert keys.policy_key_problems(unread, "p") == []


@pytest.mark.parametrize("key, fragment", [
    ("storm.local.dirs", "did you mean storm.local.dir?"),
    ("storm.workers.artifact.dir", "did you mean storm.workers.artifacts.dir?"),
    ("storm.oci.allowed.image", "did you mean storm.oci.allowed.images?"),
    ("storm.oci.layer.mount.to.keep", "did you mean storm.oci.layer.mounts.to.keep?"),
    ("storm.oci.whatever", "neither the launcher nor Storm reads it"),
    ("worker.launcher.polcy", "did you mean worker.launcher.policy?"),
    ("min.user.id", "is a worker-launcher.cfg key"),
])
def test_policy_mistakes(key, fragment):
    (problem,) = keys.policy_key_problems([key], "p")
    assert fragment in problem and key in problem


def test_config_mistakes():
    problems = keys.config_key_problems(["docker.binaries", "storm.home", "zzz"], "c")
    assert problems == [
        "unknown key docker.binaries in c is ignored; did you mean docker.binary?",
        "storm.home in c is a policy key: the launcher reads it only from the policy file "
        "named by worker.launcher.policy",
        "unknown key zzz in c is ignored",
    ]


def test_unusable_verbs():
    assert checks.unusable_verbs(policy.Policy()) == []  # not configured: nothing to judge
    full = policy.from_mapping({"storm.home": "/opt/storm", "storm.local.dir": "/var/storm"}, "p",
                               "/run/wl")
    assert checks.unusable_verbs(full) == []  # artifacts: /opt/storm/logs/workers-artifacts
    (problem,) = checks.unusable_verbs(policy.from_mapping({"storm.local.dir": "/var/storm"}, "p",
                                                         "/run/wl"))
    assert problem.startswith("p sets none of storm.workers.artifacts.dir")
    (problem,) = checks.unusable_verbs(policy.from_mapping(
        {"storm.workers.artifacts.dir": "/var/log/storm/workers-artifacts"}, "p", "/run/wl"))
    assert problem.startswith("p sets no storm.local.dir: code-dir, blob, rmr, worker")


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:40 / /run rw shared:5 - tmpfs tmpfs rw
40 30 7:0 / /run/wl/layers/aaa/mnt ro shared:9 - squashfs /dev/loop0 ro
41 30 7:1 / /run/wl/layers/bbb/mnt ro shared:10 - squashfs /dev/loop1 ro
42 30 0:50 / /run/wl/6700-c1/rootfs rw shared:11 - overlay overlay rw,lowerdir=/run/wl/layers/aaa/mnt,upperdir=/run/wl/6700-c1/upper,workdir=/run/wl/6700-c1/work
43 30 8:1 /var/storm/workers/w\\0401 /run/wl/6700-c1/binds/0 rw shared:1 - ext4 /dev/sda1 rw
44 30 8:1 /var/storm/workers/w2 /run/wl/6701-c2/binds/0 rw shared:1 - ext4 /dev/sda1 rw
45 30 0:60 / /run/wl/stray rw - tmpfs wl-stray rw
"""


def test_mountinfo_and_what_a_bind_shows():
    mounts = mountinfo.parse(MOUNTINFO)
    by_point = {m.mount_point: m for m in mounts}
    bind = by_point["/run/wl/6700-c1/binds/0"]
    assert bind.root == "/var/storm/workers/w 1"
    assert state.shown_path(bind, mounts, "/run/wl") == "/var/storm/workers/w 1"
    assert by_point["/run/wl/6700-c1/rootfs"].lower_dirs() == ["/run/wl/layers/aaa/mnt"]


def test_run_root_reading_and_orphans(tmp_path):
    root = tmp_path  # stands for /run/wl: the same names below it
    for path in ("layers/aaa/mnt", "layers/bbb/mnt", "layers/ccc", "6700-c1/rootfs",
                 "6700-c1/binds/0", "6701-c2/binds/0", "6701-c2/upper", "stray", "unrelated"):
        (root / path).mkdir(parents=True)
    (root / "layers" / "lock").write_text("")
    text = MOUNTINFO.replace("/run/wl", str(root))
    loops = {"/dev/loop0": "/img/a.sqsh", "/dev/loop1": "/img/b.sqsh (deleted)",
             "/dev/loop7": "/elsewhere.img"}
    runc = {"6700-c1": {"pid": 5, "status": "running", "rootfs": f"{root}/6700-c1/rootfs"}}
    found = state.collect(str(root), mountinfo.parse(text), loops, runc.get)
    containers = {c["id"]: c for c in found["containers"]}
    assert set(containers) == {"6700-c1", "6701-c2"}  # not layers, stray or unrelated
    assert not containers["6700-c1"]["orphaned"]
    assert containers["6700-c1"]["rootfs"]["layers"] == ["aaa"]
    orphan = containers["6701-c2"]
    assert orphan["orphaned"] and orphan["binds"][0]["shows"] == "/var/storm/workers/w2"
    assert "still mounted: binds/0" in orphan["problems"]
    layers = {layer["name"]: layer for layer in found["layers"]}
    assert layers["aaa"]["users"] == ["6700-c1"] and not layers["aaa"]["orphaned"]
    assert layers["bbb"]["problem"] == "unused, its file deleted"
    assert layers["ccc"]["problem"] == "a layer directory without its mount"
    assert [m["path"] for m in found["other_mounts"]] == [f"{root}/stray"]
    assert found["unmounted_loop_devices"] == [{"device": "/dev/loop7",
                                                "backing_file": "/elsewhere.img"}]
    assert found["summary"] == {"containers": 2, "orphaned_containers": 1, "stray_binds": 1,
                                "layers": 3, "orphaned_layers": 2, "other_mounts": 1}
    text = state.render(dict(found, runc_without_directory=[]))
    assert "6701-c2  runc: no state  ORPHANED" in text and "reap-oci-container" in text
