"""Storm's docker requests, byte for byte: the test generators (tests/support/docker.py)
reproduce storm-facts.md E1 and E2 exactly, and the launcher's pure checks accept them; the
seccomp profile check, the pending record and the `docker create` line."""

import hashlib

import pytest

from support import docker as storm
from worker_launcher.core.errors import ExitCode, LauncherError
from worker_launcher.core.tokens import split_line
from worker_launcher.docker import command_line as cl
from worker_launcher.docker import handoff, run, seccomp

WID = "7c3c1f2e-2d0c-4a61-9d4b-8c5f7a1e2b3c"
WORKDIR = f"/var/storm/workers/{WID}"
E1 = dict(wid=WID, uid=2001, groups=["2001"], image="storm/rhel7:dev_current",
          cgroup_root="/sys/fs/cgroup", storm_home="/opt/storm", local_dir="/var/storm",
          artifacts="/opt/storm/logs/workers-artifacts/topo-1-1700000000/6700",
          nscd="/var/run/nscd",
          shared="/var/storm/supervisor/stormdist/topo-1-1700000000/shared_by_topology",
          cgroup_parent="/storm", cpu=100)
E1_RULES = cl.Rules(2001, 2001, (2001,), (WORKDIR,), "/storm")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_e1_run_line_is_storms_to_the_byte():
    line = storm.run_line(**E1)
    assert len(line.encode()) == 1156 and "\n" not in line
    assert _sha256(line) == "b2fb67eeb2524a28e4d050148df4ae43e84bd9059de6b617aa159f33aec36242"


def test_e1_variant_with_seccomp_and_memory_is_storms_to_the_byte():
    line = storm.run_line(**E1, seccomp="/etc/storm/seccomp.json", memory_mb=896)
    digest = _sha256(line)
    assert len(line.encode()) == 1217 and digest.startswith("ef0e3d4f") and digest.endswith("5526")


@pytest.mark.parametrize("options", [{}, {"seccomp": "/etc/storm/seccomp.json", "memory_mb": 896},
                                     {"cores": ["0", "1", "2", "3"], "memory_zone": "0"},
                                     {"cpu": 260, "readonly": ["/etc/krb5.conf"],
                                      "readwrite": ["/data/scratch"]},
                                     {"cpu": None}])
def test_storms_run_lines_are_accepted(options):
    line = storm.run_line(**dict(E1, **options))
    request = cl.validate(split_line(line.encode(), "docker-run.sh"), E1_RULES, "docker-run.sh")
    assert request.name == WID and request.cidfile == f"{WORKDIR}/container.cid"
    assert request.seccomp == options.get("seccomp")
    assert (f"{WORKDIR}/tmp", "/tmp", True) in request.binds
    assert (f"/var/storm/workers-users/{WID}", f"/var/storm/workers-users/{WID}", True) \
        in request.binds  # a FILE bind, read-write
    assert ("/var/run/nscd", "/var/run/nscd", True) in request.binds  # nscd read-write
    assert ("/sys/fs/cgroup", "/sys/fs/cgroup", False) in request.binds


def test_a_user_with_supplementary_groups_gets_one_group_add_each():
    line = storm.run_line(**dict(E1, groups=["2001", "2100", "30"]))
    assert " --group-add 2001 --group-add 2100 --group-add 30 " in line
    rules = cl.Rules(2001, 2001, (2001, 2100, 30), (WORKDIR,), "/storm")
    cl.validate(line.split(" "), rules, "docker-run.sh")


@pytest.mark.parametrize("tag,size,text", [
    ("docker-wait", 41, f"wait {WID}"),
    ("docker-ps", 66, f"ps --filter=name={WID} --quiet=true"),
    ("docker-stop", 41, f"stop {WID}"),
    ("docker-rm", 39, f"rm {WID}"),
    ("docker-force-rm", 47, f"rm --force {WID}"),
])
def test_e2_command_files_are_storms_and_accepted(tag, size, text):
    line = storm.STORM_FILES[tag](WID)
    assert line == text and len(line.encode()) == size
    request = cl.validate(split_line(line.encode(), f"{tag}.sh"), E1_RULES, f"{tag}.sh")
    assert request.tokens == line.split(" ") and request.name == WID


def test_storms_inspect_line_is_refused():
    """DockerInspectCommand is used by no DockerManager code: the launcher refuses it."""
    with pytest.raises(LauncherError) as caught:
        cl.validate(f"inspect --format='{{{{.State.Status}}}}' {WID}".split(" "), E1_RULES, "f")
    assert caught.value.code == ExitCode.DOCKER_COMMAND_REJECTED


def test_java_double():
    assert [storm.java_double(c / 100.0) for c in (100, 260, 50, 1, 1000)] == \
        ["1.0", "2.6", "0.5", "0.01", "10.0"]


def test_create_line_from_storms_run_line():
    line = storm.run_line(**E1, seccomp="/etc/storm/seccomp.json", memory_mb=896)
    request = cl.validate(line.split(" "), E1_RULES, "f")
    paths = [f"/proc/42/fd/9/{n}" for n in range(len(request.binds))]
    tokens = run.create_tokens(request, paths, seccomp_fd=7)
    assert tokens[0] == "create" and "-d" not in tokens
    assert not any(t.startswith("--cidfile") for t in tokens)
    assert "seccomp=/proc/self/fd/4" in tokens and "seccomp=/etc/storm/seccomp.json" not in tokens
    volumes = [tokens[i + 1] for i, t in enumerate(tokens) if t == "-v"]
    assert volumes[0] == "/proc/42/fd/9/0:/sys/fs/cgroup:ro"
    assert volumes[8] == "/proc/42/fd/9/8:/tmp"
    assert tokens[-3:] == ["storm/rhel7:dev_current", "bash", f"{WORKDIR}/storm-worker-script.sh"]
    kept = [t for t in line.split(" ")[1:] if t not in ("-d",) and not t.startswith("--cidfile")
            and ":" not in t and not t.startswith("seccomp=")]
    assert [t for t in tokens[1:] if ":" not in t and not t.startswith("seccomp=")] == kept


DENY = '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}'


@pytest.mark.parametrize("text", [
    DENY, storm.seccomp_profile() if storm.UNISTD.exists() else DENY,
    '{"defaultAction": "SCMP_ACT_KILL_PROCESS"}',
    '{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64"],'
    ' "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],'
    ' "flags": ["SECCOMP_FILTER_FLAG_LOG"], "syscalls": [{"names": ["personality"],'
    ' "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],'
    ' "includes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["amd64"], "minKernel": "4.8"},'
    ' "excludes": {}, "comment": "x", "errnoRet": 1}]}',
])
def test_seccomp_profiles_docker_may_get(text):
    assert seccomp.profile_problem(text) is None


@pytest.mark.parametrize("text,why", [
    ('{"defaultAction": "SCMP_ACT_ALLOW"}', "every system call"),
    ('{"defaultAction": "SCMP_ACT_LOG"}', "every system call"),
    ('{"defaultAction": "SCMP_ACT_NOTIFY"}', "every system call"),
    ("{}", "defaultAction is missing"),
    ("[]", "object"),
    ("not json", "JSON"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "DefaultAction": "SCMP_ACT_ALLOW"}', "DefaultAction"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "\u017fyscalls": []}', "unknown key"),
    ('{"defaultAction": "allow"}', "not a seccomp action"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}', "action is missing"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
     ' "Action": "SCMP_ACT_ERRNO"}]}', "Action"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": "read", "action": "SCMP_ACT_ALLOW"}]}',
     "list of strings"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
     ' "args": [{"index": -1, "value": 0, "op": "SCMP_CMP_EQ"}]}]}', "whole number"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": true}', "whole number"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/agent.sock"}', "seccomp agent"),
])
def test_seccomp_profiles_refused(text, why):
    problem = seccomp.profile_problem(text)
    assert problem and why in problem, problem


def test_sealed_copy_cannot_change():
    import os

    fd = seccomp.sealed_copy(DENY.encode())
    try:
        assert os.read(fd, 4096) == DENY.encode()
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"x", 0)
    finally:
        os.close(fd)


def test_pending_record_fields():
    assert handoff.parse_record(b"user=wlalice\ncidfile=/a/b/container.cid\n") == \
        {"user": "wlalice", "cidfile": "/a/b/container.cid"}
    assert handoff.parse_record(b"junk\nuser=x=y\n") == {"user": "x=y"}
