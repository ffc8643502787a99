"""oci-config.json: exactly what Storm's RuncLibContainerManager writes is accepted (E5 byte
for byte, and its variants), everything else refused with exit 24 and the JSON path of the
offending field."""

import copy
import hashlib
import json

import pytest

from support.oci import storm_json, storm_request
from worker_launcher.core.errors import ExitCode, LauncherError
from worker_launcher.core.identity import Identity
from worker_launcher.oci import bundle, spec

WID = "7c3c1f2e-2d0c-4a61-9d4b-8c5f7a1e2b3c"
CID = f"6700-{WID}"
W = f"/var/storm/workers/{WID}"
A = "/opt/storm/logs/workers-artifacts/topo-1-1700000000/6700"
LAYERS = [f"/var/storm/supervisor/oci-resources/layers/{n * 64}.sqsh" for n in "12"]
LD = ("LD_LIBRARY_PATH=/var/storm/supervisor/stormdist/topo-1-1700000000/resources/Linux-amd64:"
      "/var/storm/supervisor/stormdist/topo-1-1700000000/resources:/usr/local/lib:"
      "/opt/local/lib:/usr/lib:/usr/lib64")
E5_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", LD]
E5_SHA256 = "f3083f19248bbe55b428a3a12177d9e669d22a69881f6f51ec2322aa400348e5"
EXPECT = spec.Expect("alice", W, "/storm", "/sys/fs/cgroup")
SECCOMP_FILE = '{\n  "defaultAction": "SCMP_ACT_ERRNO"\n}\n'  # storm-facts E5, seccomp variant


def e5(**changes) -> dict:
    values = dict(user="alice", worker_id=WID, port=6700, local="/var/storm",
                  storm_home="/opt/storm", nscd="/var/run/nscd", cgroup_root="/sys/fs/cgroup",
                  artifacts=A, topology="topo-1-1700000000", layers=LAYERS, env=E5_ENV)
    values.update(changes)
    return storm_request(**values)


def parse_bytes(data: bytes, expect=EXPECT):
    return spec.parse(spec.decode(data), expect)


def test_the_fixture_writes_e5_byte_for_byte():
    data = storm_json(e5())
    assert len(data) == 3006 and hashlib.sha256(data).hexdigest() == E5_SHA256


def test_e5_is_accepted():
    parsed = parse_bytes(storm_json(e5()))
    assert (parsed.container_id, parsed.port, parsed.worker_id) == (CID, 6700, WID)
    assert parsed.cgroups_path == f"/storm/{CID}"
    assert parsed.pid_file == f"{W}/artifacts/container-{WID}.pid"
    assert [m.writable for m in parsed.mounts] == [False] * 7 + [True] * 5
    assert parsed.mounts[5].destination == "/sys/fs/cgroup"  # the cgroup root exception
    assert parsed.mounts[-1].destination == "/tmp" and parsed.seccomp is None


@pytest.mark.parametrize("variant", [
    dict(memory=939524096),  # memory enforcement: "memory" before "cpu"
    dict(numa=("0,1,2,3", "0")),
    dict(cpu_quota=None),  # no cpu reserved: "resources":{}
    dict(env=[]),  # "env":[]
    dict(keep=0),  # reapLayerKeepCount omitted
    dict(args=["/usr/bin/tini", "--"]),  # an image Entrypoint
    dict(readonly=["/etc/krb5.conf"], readwrite=["/data/shared"]),
])
def test_storm_variants_are_accepted(variant):
    data = storm_json(e5(**variant))
    parse_bytes(data)  # accepted
    if "keep" in variant:
        assert b"reapLayerKeepCount" not in data
    if "memory" in variant:
        assert b'"resources":{"memory":{"limit":939524096},"cpu"' in data


def test_seccomp_file_embedded_verbatim_is_accepted():
    data = storm_json(e5(), SECCOMP_FILE)
    assert data.endswith(b'"seccomp":{\n  "defaultAction": "SCMP_ACT_ERRNO"\n}\n}}}')
    assert parse_bytes(data).seccomp == {"defaultAction": "SCMP_ACT_ERRNO"}


def test_doubled_slash_of_a_trailing_slash_parent_is_accepted_normalized():
    request = e5()
    request["ociRuntimeConfig"]["linux"]["cgroupsPath"] = f"/storm//{CID}"
    parsed = spec.parse(request, spec.Expect("alice", W, "/storm", "/sys/fs/cgroup"))
    assert parsed.cgroups_path == f"/storm/{CID}"


def test_mount_layers_takes_the_workdir_from_cwd():
    parsed = spec.parse(e5(), spec.Expect("alice"))
    assert parsed.workdir == W


def test_runtime_config_takes_the_user_from_the_database():
    parsed = parse_bytes(storm_json(e5(), SECCOMP_FILE))
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
    assert all({"nosuid", "nodev"} <= set(m["options"]) for m in config["mounts"][7:])
    assert config["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"


RT = "ociRuntimeConfig"
M = f"$.{RT}.mounts"
L = f"$.{RT}.linux"
S = f"{L}.seccomp"


def edit(path, value=None, delete=False, document=None):
    document = copy.deepcopy(document or e5())
    *parents, last = path
    target = document
    for key in parents:
        target = target[key]
    if delete:
        del target[last]
    else:
        target[last] = value
    return document


def with_seccomp(profile):
    return edit((RT, "linux", "seccomp"), profile)


CASES = [
    # version: Storm always writes "0.1"
    (("version",), "0.2", "$.version"),
    (("version",), 0.1, "$.version"),
    (("username",), "root", "$.username"),
    (("username",), "bob", "$.username"),
    # containerId: <port 1-65535>-<the workdir's worker id>
    (("containerId",), f"6700-{WID}/../../etc", "$.containerId"),
    (("containerId",), f"0-{WID}", "$.containerId"),
    (("containerId",), f"65536-{WID}", "$.containerId"),
    (("containerId",), f"06700-{WID}", "$.containerId"),
    (("containerId",), f"+6700-{WID}", "$.containerId"),
    (("containerId",), f"6700-{WID.upper()}", "$.containerId"),
    (("containerId",), "6700-8198e1f0-f323-4b9d-8625-e4fd640cd058", "$.containerId"),
    (("containerId",), WID, "$.containerId"),
    (("pidFile",), "relative.pid", "$.pidFile"),
    (("pidFile",), f"{W}/../x.pid", "$.pidFile"),
    (("pidFile",), f"{W}//artifacts/x.pid", "$.pidFile"),
    # containerScriptPath: directly in the workdir, and what args run
    (("containerScriptPath",), f"{W}/tmp/storm-worker-script.sh", "$.containerScriptPath"),
    (("containerScriptPath",), "/bin/sh", "$.containerScriptPath"),
    (("containerScriptPath",), f"{W}/other.sh", f"$.{RT}.process.args"),
    ((RT, "process", "args"), ["sh", f"{W}/storm-worker-script.sh"], f"$.{RT}.process.args"),
    ((RT, "process", "args"), ["bash"], f"$.{RT}.process.args"),
    ((RT, "process", "args"), [], f"$.{RT}.process.args"),
    ((RT, "process", "args", 0), 3, f"$.{RT}.process.args[0]"),
    ((RT, "process", "cwd"), "/var/storm/workers", f"$.{RT}.process.cwd"),
    ((RT, "process", "env"), ["NOEQUALS"], f"$.{RT}.process.env[0]"),
    ((RT, "process", "env"), ["=x"], f"$.{RT}.process.env[0]"),
    ((RT, "process", "env"), "PATH=/bin", f"$.{RT}.process.env"),
    ((RT, "process", "user"), {"uid": 0, "gid": 0}, f"$.{RT}.process.user"),
    ((RT, "process", "capabilities"), {}, f"$.{RT}.process.capabilities"),
    ((RT, "process", "noNewPrivileges"), False, f"$.{RT}.process.noNewPrivileges"),
    ((RT, "process", "terminal"), True, f"$.{RT}.process.terminal"),
    # layers
    (("layers",), [], "$.layers"),
    (("layers", 0, "mediaType"), "application/vnd.docker.image.rootfs.diff.tar.gzip", "$.layers[0].mediaType"),
    (("layers", 0, "path"), "/a/../etc/shadow", "$.layers[0].path"),
    (("layers", 0, "path"), "layer.sqsh", "$.layers[0].path"),
    (("layers", 0, "extra"), 1, "$.layers[0].extra"),
    (("extra",), 1, "$.extra"),
    (("reapLayerKeepCount",), -1, "$.reapLayerKeepCount"),
    (("reapLayerKeepCount",), 1.5, "$.reapLayerKeepCount"),
    (("reapLayerKeepCount",), True, "$.reapLayerKeepCount"),
    (("reapLayerKeepCount",), "100", "$.reapLayerKeepCount"),
    ((RT, "hooks"), {}, f"$.{RT}.hooks"),
    ((RT, "root"), {"path": "/"}, f"$.{RT}.root"),
    ((RT, "hostname"), "x", f"$.{RT}.hostname"),
    # mounts: Storm's binds only, each at its own place, never over the container's own
    ((RT, "mounts", 0, "type"), "proc", f"{M}[0].type"),
    ((RT, "mounts", 0, "options"), ["ro", "rbind"], f"{M}[0].options"),
    ((RT, "mounts", 0, "options"), ["ro", "rw", "rbind", "rprivate"], f"{M}[0].options"),
    ((RT, "mounts", 0, "options"), ["ro", "rbind", "rprivate", "suid"], f"{M}[0].options"),
    ((RT, "mounts", 0, "options"), ["ro", "rbind", "rshared"], f"{M}[0].options"),
    ((RT, "mounts", 0, "options"), ["ro", "ro", "rbind"], f"{M}[0].options"),
    ((RT, "mounts", 0, "source"), "relative", f"{M}[0].source"),
    ((RT, "mounts", 0, "destination"), "/a/../proc", f"{M}[0].destination"),
    ((RT, "mounts", 0, "destination"), "/etc/passwd", f"{M}[0].destination"),
    ((RT, "mounts", 1), {"destination": "/etc/resolv.conf", "type": "bind", "source": "/etc/resolv.conf",
                         "options": ["ro", "rbind", "rprivate"]}, f"{M}[1].destination"),
    ((RT, "mounts", 11, "destination"), "/var/tmp", f"{M}[11].destination"),
    ((RT, "linux", "cgroupsPath"), "/storm/../..", f"{L}.cgroupsPath"),
    ((RT, "linux", "cgroupsPath"), "/", f"{L}.cgroupsPath"),
    ((RT, "linux", "cgroupsPath"), f"/other/{CID}", f"{L}.cgroupsPath"),
    ((RT, "linux", "cgroupsPath"), f"/storm/{CID}/", f"{L}.cgroupsPath"),
    ((RT, "linux", "cgroupsPath"), f"/storm/x/../{CID}", f"{L}.cgroupsPath"),
    ((RT, "linux", "cgroupsPath"), f"storm/{CID}", f"{L}.cgroupsPath"),
    ((RT, "linux", "cgroupsPath"), "/system.slice/sshd.service", f"{L}.cgroupsPath"),
    ((RT, "linux", "namespaces"), [], f"{L}.namespaces"),
    ((RT, "linux", "devices"), [], f"{L}.devices"),
    ((RT, "linux", "resources", "devices"), [{"allow": True, "access": "rwm"}], f"{L}.resources.devices"),
    ((RT, "linux", "resources", "pids"), {"limit": 5}, f"{L}.resources.pids"),
    ((RT, "linux", "resources", "blockIO"), {"weight": 5}, f"{L}.resources.blockIO"),
    ((RT, "linux", "resources", "blockIo"), {"weight": 5}, f"{L}.resources.blockIo"),
    ((RT, "linux", "resources", "cpu", "quota"), "lots", f"{L}.resources.cpu.quota"),
    ((RT, "linux", "resources", "cpu", "quota"), 100000.0, f"{L}.resources.cpu.quota"),
    ((RT, "linux", "resources", "cpu", "quota"), 0, f"{L}.resources.cpu.quota"),
    ((RT, "linux", "resources", "cpu", "period"), 10, f"{L}.resources.cpu.period"),
    ((RT, "linux", "resources", "cpu", "shares"), 1024, f"{L}.resources.cpu.shares"),
    ((RT, "linux", "resources", "cpu", "realtimeRuntime"), 950000, f"{L}.resources.cpu.realtimeRuntime"),
    ((RT, "linux", "resources", "cpu", "realtimePeriod"), 1000000, f"{L}.resources.cpu.realtimePeriod"),
    ((RT, "linux", "resources", "cpu", "cpus"), "0-3", f"{L}.resources.cpu"),
    ((RT, "linux", "resources", "memory"), {"limit": -1}, f"{L}.resources.memory.limit"),
    ((RT, "linux", "resources", "memory"), {"swap": 1}, f"{L}.resources.memory.swap"),
    ((RT, "linux", "resources", "memory"), {"limit": True}, f"{L}.resources.memory.limit"),
    ((RT, "linux", "resources"), None, f"{L}.resources"),
    ((RT, "linux", "seccomp"), None, S),
    ((RT, "linux", "seccomp"), "SCMP_ACT_ERRNO", S),
]


@pytest.mark.parametrize("path, value, where", CASES, ids=[c[2] + "=" + repr(c[1])[:24] for c in CASES])
def test_rejections_name_the_field(path, value, where):
    with pytest.raises(LauncherError) as caught:
        spec.parse(edit(path, value), EXPECT)
    assert caught.value.code == ExitCode.INVALID_CONFIG_FILE
    assert caught.value.message.startswith(f"oci-config.json {where}")


@pytest.mark.parametrize("destination", ["/", "/proc", "/proc/sys", "/sys", "/sys/kernel",
                                         "/sys/fs/cgroup/memory", "/dev", "/dev/shm", "/dev/pts",
                                         "/dev/mqueue"])
def test_destinations_over_the_containers_own_are_refused(destination):
    document = e5(readonly=[destination])
    with pytest.raises(LauncherError) as caught:
        spec.parse(document, EXPECT)
    assert caught.value.message.startswith(f"oci-config.json {M}[0].destination")


def test_the_cgroup_root_exception_is_exact():
    assert spec.destination_problem("/sys/fs/cgroup", "/sys/fs/cgroup", False, "/sys/fs/cgroup") is None
    assert spec.destination_problem("/sys/fs/cgroup", "/sys/fs/cgroup", True, "/sys/fs/cgroup")
    assert spec.destination_problem("/sys/fs/cgroup", "/sys/fs/cgroup", False, "/cgroup")
    assert spec.destination_problem("/sys", "/sys", False, "/sys")


@pytest.mark.parametrize("path", [("username",), ("containerId",), ("layers",), (RT,), ("version",),
                                  (RT, "process"), (RT, "linux", "cgroupsPath"),
                                  (RT, "linux", "resources"), (RT, "mounts"), (RT, "process", "env")])
def test_missing_fields_are_refused(path):
    with pytest.raises(LauncherError) as caught:
        spec.parse(edit(path, delete=True), EXPECT)
    assert "is missing" in caught.value.message


def test_workdir_and_container_id_must_match():
    other = spec.Expect("alice", "/var/storm/workers/8198e1f0-f323-4b9d-8625-e4fd640cd058")
    with pytest.raises(LauncherError) as caught:
        spec.parse(e5(), other)
    assert "$.ociRuntimeConfig.process.cwd" in caught.value.message


def test_a_nul_anywhere_is_refused():
    document = e5()
    document["ociRuntimeConfig"]["process"]["env"].append("X=a\0b")
    with pytest.raises(LauncherError) as caught:
        spec.parse(document, EXPECT)
    assert "$.ociRuntimeConfig.process.env[2]" in caught.value.message


# --- seccomp: the runtime-spec schema, strictly -------------------------------------------
FULL_PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
    "syscalls": [
        {"names": ["accept", "read", "write", "_llseek"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 4294967295, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2080505856, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["kexec_load"], "action": "SCMP_ACT_LOG"},
        {"names": ["uselib"], "action": "SCMP_ACT_TRACE", "errnoRet": 38},
    ],
}


def test_the_full_schema_is_accepted():
    parsed = spec.parse(with_seccomp(copy.deepcopy(FULL_PROFILE)), EXPECT)
    assert parsed.seccomp == FULL_PROFILE


SECCOMP_CASES = [
    (("defaultAction",), "SCMP_ACT_ALLOW", "defaultAction"),
    (("defaultAction",), "SCMP_ACT_LOG", "defaultAction"),
    (("defaultAction",), "SCMP_ACT_NOTIFY", "defaultAction"),
    (("defaultAction",), "SCMP_ACT_MAYBE", "defaultAction"),
    (("defaultAction",), ["SCMP_ACT_ERRNO"], "defaultAction"),
    (("defaultErrnoRet",), -1, "defaultErrnoRet"),
    (("defaultErrnoRet",), 4096, "defaultErrnoRet"),
    (("defaultErrnoRet",), "1", "defaultErrnoRet"),
    (("listenerPath",), "/run/agent.sock", "listenerPath"),
    (("listenerMetadata",), "x", "listenerMetadata"),
    (("architectures",), ["SCMP_ARCH_VAX"], "architectures[0]"),
    (("architectures",), "SCMP_ARCH_X86_64", "architectures"),
    (("architectures",), ["SCMP_ARCH_X86", "SCMP_ARCH_X86"], "architectures"),
    (("flags",), ["SECCOMP_FILTER_FLAG_NEW_LISTENER"], "flags[0]"),
    (("archMap",), [], "archMap"),
    (("syscalls", 0, "action"), "SCMP_ACT_NOTIFY", "syscalls[0].action"),
    (("syscalls", 0, "names"), [], "syscalls[0].names"),
    (("syscalls", 0, "names"), ["read;"], "syscalls[0].names[0]"),
    (("syscalls", 0, "names"), "read", "syscalls[0].names"),
    (("syscalls", 0, "comment"), "docker's", "syscalls[0].comment"),
    (("syscalls", 0, "includes"), {}, "syscalls[0].includes"),
    (("syscalls", 0, "errnoRet"), 1, "syscalls[0].errnoRet"),  # not with SCMP_ACT_ALLOW
    (("syscalls", 3, "errnoRet"), 1.0, "syscalls[3].errnoRet"),
    (("syscalls", 1, "args", 0, "index"), 6, "syscalls[1].args[0].index"),
    (("syscalls", 1, "args", 0, "value"), 2**64, "syscalls[1].args[0].value"),
    (("syscalls", 1, "args", 0, "value"), -1, "syscalls[1].args[0].value"),
    (("syscalls", 1, "args", 0, "value"), True, "syscalls[1].args[0].value"),
    (("syscalls", 1, "args", 0, "valueTwo"), "0", "syscalls[1].args[0].valueTwo"),
    (("syscalls", 1, "args", 0, "op"), "SCMP_CMP_XOR", "syscalls[1].args[0].op"),
    (("syscalls", 1, "args", 0, "extra"), 1, "syscalls[1].args[0].extra"),
]


@pytest.mark.parametrize("path, value, where", SECCOMP_CASES,
                         ids=[c[2] + "=" + repr(c[1])[:24] for c in SECCOMP_CASES])
def test_seccomp_rejections_name_the_field(path, value, where):
    profile = edit(path, value, document=copy.deepcopy(FULL_PROFILE))
    with pytest.raises(LauncherError) as caught:
        spec.parse(with_seccomp(profile), EXPECT)
    assert caught.value.code == ExitCode.INVALID_CONFIG_FILE
    assert caught.value.message.startswith(f"oci-config.json {S}.{where}"), caught.value.message


# --- the reader ----------------------------------------------------------------------------
@pytest.mark.parametrize("data, fragment", [
    (b"", "empty document"),
    (b"\xff\xfe", "invalid UTF-8 at line 1 column 1 (byte 0)"),
    (b'{"a":"\xc3"}', "invalid UTF-8"),
    (b'{"a":"\\x"}', "invalid escape in a string at line 1 column 7"),
    (b'{"a":"\\u12"}', "invalid escape"),
    (b'{"a":"\\ud800"}', "lone UTF-16 surrogate"),
    (b"[" * 100000 + b"]" * 100000, f"nesting deeper than {spec.MAX_DEPTH} levels"),
    (b"1" * 5000, "number longer than"),
    (b"[1e999]", "out of the range"),
    (b"NaN", "NaN and Infinity"),
    (b'{"x":-Infinity}', "NaN and Infinity"),
    (b'{"username": "alice", "username": "root"}', "duplicate key 'username' at line 1 column 23"),
    (b'{"a":1}\n{"b":2}', "extra data after the JSON value at line 2 column 1"),
    (b'{"a":1,}', "expected a key in double quotes"),
    (b'{"a":"\x01"}', "control character"),
])
def test_the_reader_refuses_with_the_position(data, fragment):
    with pytest.raises(LauncherError) as caught:
        spec.decode(data)
    assert caught.value.code == ExitCode.INVALID_CONFIG_FILE
    assert caught.value.message.startswith("oci-config.json $: is not valid JSON: ")
    assert fragment in caught.value.message


def test_the_reader_reads_what_json_reads():
    data = storm_json(e5(memory=1 << 30, numa=("0", "0")), json.dumps(FULL_PROFILE, indent=4) + "\n")
    assert spec.decode(data) == json.loads(data)


@pytest.mark.parametrize("text, ok", [
    (f"6703-{WID}", True), (f"1-{WID}", True), (f"65535-{WID}", True),
    (f"65536-{WID}", False), (f"0-{WID}", False), (f"06703-{WID}", False),
    (f"123456-{WID}", False), (f"-{WID}", False), (f"6703-{WID}-", False), ("6703-x", False),
    (f"6703/{WID}", False), (f"٣-{WID}", False), (f"6703-{WID.upper()}", False),
])
def test_container_ids(text, ok):
    assert spec.valid_container_id(text) is ok
