"""oci-config.json: everything Storm writes is accepted, everything else refused with exit
24 and the JSON path of the offending field."""

import copy
import json

import pytest

from worker_launcher.core.errors import ExitCode, LauncherError
from worker_launcher.oci import bundle, spec
from worker_launcher.core.identity import Identity

WID = "1a23ca4b-6062-4d08-8ac3-b09e7d35e7cb"
WORKDIR = f"/home/y/var/storm/workers/{WID}"
SEED = {  # the appendix of the OCI seed, shortened where it only repeats itself
    "version": "0.1",
    "username": "username1",
    "containerId": f"6703-{WID}",
    "pidFile": f"{WORKDIR}/artifacts/container-{WID}.pid",
    "containerScriptPath": f"{WORKDIR}/storm-worker-script.sh",
    "layers": [{"mediaType": "application/vnd.squashfs",
                "path": f"/home/y/var/storm/supervisor/oci-resources/layers/{n}.sqsh"}
               for n in ("3692c348", "ea067172", "1b73e943")],
    "reapLayerKeepCount": 100,
    "ociRuntimeConfig": {
        "mounts": [
            {"destination": "/home/y/lib64/storm", "type": "bind", "source": "/home/y/lib64/storm",
             "options": ["ro", "rbind", "rprivate"]},
            {"destination": "/etc/krb5.conf", "type": "bind", "source": "/etc/krb5.conf",
             "options": ["ro", "rbind", "rprivate"]},
            {"destination": WORKDIR, "type": "bind", "source": WORKDIR,
             "options": ["rw", "rbind", "rprivate"]},
            {"destination": "/tmp", "type": "bind", "source": f"{WORKDIR}/tmp",
             "options": ["rw", "rbind", "rprivate"]},
        ],
        "process": {
            "cwd": WORKDIR,
            "env": ["PATH=/usr/bin:/bin", "LANG=en_US.UTF-8",
                    "LD_LIBRARY_PATH=/home/y/lib64:/usr/local/lib64:/usr/lib64:/lib64:"],
            "args": ["bash", f"{WORKDIR}/storm-worker-script.sh"],
        },
        "linux": {
            "cgroupsPath": f"/storm/6703-{WID}",
            "resources": {"cpu": {"quota": 140000, "period": 100000}},
            "seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [
                    {"names": ["accept", "read", "write", "_llseek"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 4294967295, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
                    {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 2080505856, "valueTwo": 0,
                               "op": "SCMP_CMP_MASKED_EQ"}]},
                ],
            },
        },
    },
}


def parse(document, user="username1"):
    return spec.parse(document, user)


def test_storm_request_is_accepted():
    parsed = parse(copy.deepcopy(SEED))
    assert parsed.container_id == f"6703-{WID}"
    assert [m.writable for m in parsed.mounts] == [False, False, True, True]
    assert parsed.layers[0].endswith("3692c348.sqsh")
    extra = copy.deepcopy(SEED)
    extra["ociRuntimeConfig"]["process"].update(noNewPrivileges=True, terminal=False)
    parse(extra)


def test_runtime_config_takes_the_user_from_the_database():
    parsed = parse(copy.deepcopy(SEED))
    config = bundle.runtime_config(parsed, Identity(31315, 100, (100, 5548)), "/run/x/rootfs",
                                   "node1", tuple(m.source for m in parsed.mounts))
    assert config["process"]["user"] == {"uid": 31315, "gid": 100, "additionalGids": [5548]}
    assert config["process"]["noNewPrivileges"] is True
    assert all(v == [] for v in config["process"]["capabilities"].values())
    assert config["root"] == {"path": "/run/x/rootfs", "readonly": True}
    assert config["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert [n["type"] for n in config["linux"]["namespaces"]] == ["pid", "ipc", "uts", "mount"]
    assert "/proc/kcore" in config["linux"]["maskedPaths"]
    assert config["mounts"][0]["type"] == "proc" and config["mounts"][-1]["destination"] == "/tmp"
    assert config["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"


def mutate(path, value=None, delete=False):
    document = copy.deepcopy(SEED)
    *parents, last = path
    target = document
    for key in parents:
        target = target[key]
    if delete:
        del target[last]
    else:
        target[last] = value
    return document


RT = "ociRuntimeConfig"
CASES = [
    (("username",), "root", "$.username"),
    (("containerId",), "6703-../../etc", "$.containerId"),
    (("containerId",), f"6703-{WID}; rm -rf /", "$.containerId"),
    (("containerId",), WID, "$.containerId"),
    (("containerId",), f"x-{WID}", "$.containerId"),
    (("containerId",), f"6703-{WID.upper()}", "$.containerId"),
    (("pidFile",), "relative.pid", "$.pidFile"),
    (("pidFile",), f"{WORKDIR}/../x.pid", "$.pidFile"),
    (("layers",), [], "$.layers"),
    (("layers", 0, "mediaType"), "application/vnd.docker.image.rootfs.diff.tar.gzip", "$.layers[0].mediaType"),
    (("layers", 0, "path"), "/a/../etc/shadow", "$.layers[0].path"),
    (("layers", 0, "path"), "layer.sqsh", "$.layers[0].path"),
    (("layers", 0, "extra"), 1, "$.layers[0].extra"),
    (("extra",), 1, "$.extra"),
    (("reapLayerKeepCount",), -1, "$.reapLayerKeepCount"),
    ((RT, "hooks"), {}, f"$.{RT}.hooks"),
    ((RT, "mounts", 0, "type"), "proc", f"$.{RT}.mounts[0].type"),
    ((RT, "mounts", 0, "options"), ["ro", "rbind"], f"$.{RT}.mounts[0].options"),
    ((RT, "mounts", 0, "options"), ["ro", "rw", "rbind", "rprivate"], f"$.{RT}.mounts[0].options"),
    ((RT, "mounts", 0, "options"), ["ro", "rbind", "rprivate", "suid"], f"$.{RT}.mounts[0].options"),
    ((RT, "mounts", 0, "options"), ["ro", "rbind", "rprivate", "rshared"], f"$.{RT}.mounts[0].options"),
    ((RT, "mounts", 0, "source"), "relative", f"$.{RT}.mounts[0].source"),
    ((RT, "mounts", 0, "destination"), "/a/../proc", f"$.{RT}.mounts[0].destination"),
    ((RT, "process", "args"), [], f"$.{RT}.process.args"),
    ((RT, "process", "args"), ["bash", 3], f"$.{RT}.process.args[1]"),
    ((RT, "process", "env"), ["NOEQUALS"], f"$.{RT}.process.env[0]"),
    ((RT, "process", "cwd"), "relative", f"$.{RT}.process.cwd"),
    ((RT, "process", "user"), {"uid": 0, "gid": 0}, f"$.{RT}.process.user"),
    ((RT, "process", "capabilities"), {}, f"$.{RT}.process.capabilities"),
    ((RT, "process", "noNewPrivileges"), False, f"$.{RT}.process.noNewPrivileges"),
    ((RT, "process", "terminal"), True, f"$.{RT}.process.terminal"),
    ((RT, "linux", "cgroupsPath"), "/storm/../..", f"$.{RT}.linux.cgroupsPath"),
    ((RT, "linux", "cgroupsPath"), "/", f"$.{RT}.linux.cgroupsPath"),
    ((RT, "linux", "namespaces"), [], f"$.{RT}.linux.namespaces"),
    ((RT, "linux", "devices"), [], f"$.{RT}.linux.devices"),
    ((RT, "linux", "resources", "devices"), [{"allow": True, "access": "rwm"}],
     f"$.{RT}.linux.resources.devices"),
    ((RT, "linux", "resources", "pids"), {"limit": 5}, f"$.{RT}.linux.resources.pids"),
    ((RT, "linux", "resources", "cpu", "quota"), "lots", f"$.{RT}.linux.resources.cpu.quota"),
    ((RT, "linux", "seccomp", "defaultAction"), "SCMP_ACT_ALLOW", f"$.{RT}.linux.seccomp.defaultAction"),
    ((RT, "linux", "seccomp", "defaultAction"), "SCMP_ACT_MAYBE", f"$.{RT}.linux.seccomp.defaultAction"),
    ((RT, "linux", "seccomp", "listenerPath"), "/x", f"$.{RT}.linux.seccomp.listenerPath"),
    ((RT, "linux", "seccomp", "syscalls", 0, "action"), "SCMP_ACT_NOTIFY",
     f"$.{RT}.linux.seccomp.syscalls[0].action"),
    ((RT, "linux", "seccomp", "syscalls", 1, "args", 0, "index"), 9,
     f"$.{RT}.linux.seccomp.syscalls[1].args[0].index"),
]


@pytest.mark.parametrize("path, value, where", CASES, ids=[c[2] + "=" + repr(c[1])[:20] for c in CASES])
def test_rejections_name_the_field(path, value, where):
    with pytest.raises(LauncherError) as caught:
        parse(mutate(path, value))
    assert caught.value.code == ExitCode.INVALID_CONFIG_FILE
    assert caught.value.message.startswith(f"oci-config.json {where}")


@pytest.mark.parametrize("path", [("username",), ("containerId",), ("layers",), (RT,),
                                  (RT, "process"), (RT, "linux", "cgroupsPath")])
def test_missing_fields_are_refused(path):
    with pytest.raises(LauncherError) as caught:
        parse(mutate(path, delete=True))
    assert "is missing" in caught.value.message


def test_size_and_depth_limits():
    deep = mutate(("version",), None)
    nested = "x"
    for _ in range(40):
        nested = [nested]
    deep["version"] = nested
    with pytest.raises(LauncherError) as caught:
        parse(deep)
    assert "nests deeper" in caught.value.message
    with pytest.raises(LauncherError) as caught:
        spec.decode(b"[" * 100000 + b"]" * 100000)
    assert caught.value.code == ExitCode.INVALID_CONFIG_FILE
    with pytest.raises(LauncherError):
        spec.decode(b"\xff\xfe")
    assert spec.decode(json.dumps(SEED).encode()) == SEED


@pytest.mark.parametrize("text, ok", [
    (f"6703-{WID}", True), (f"1-{WID}", True), (f"65535-{WID}", True),
    (f"123456-{WID}", False), (f"-{WID}", False), (f"6703-{WID}-", False), ("6703-x", False),
    (f"6703/{WID}", False), (f"٣-{WID}", False),
])
def test_container_ids(text, ok):
    assert spec.valid_container_id(text) is ok
