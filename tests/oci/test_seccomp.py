"""The operator's seccomp profile as Storm embeds it (the file's bytes verbatim, newlines and
all, @JsonRawValue): installed by runc for real, and, when the policy names
storm.oci.seccomp.profile, required to be exactly that profile."""

import json
import os
import re
from pathlib import Path

import pytest

from support.env import SUPERVISOR, require, uid_of
from support.oci import assert_nothing_left, assert_refused

UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
PROBE = ("mkdir /tmp/denied 2> /dev/null && echo made > $WORKDIR/mkdir.out"
         " || echo denied > $WORKDIR/mkdir.out\n"
         "echo up > $WORKDIR/up.out\nsleep 300\n")


def profile_text(denied=("mkdir", "mkdirat")) -> str:
    """An operator's profile file: every x86-64 system call allowed but `denied`, which fail
    with EPERM (defaultAction); indented, with a trailing newline, as people write them."""
    require(UNISTD.exists(), "linux-libc-dev (asm/unistd_64.h) is not installed")
    names = sorted(set(re.findall(r"#define __NR_(\w+) ", UNISTD.read_text())) - set(denied))
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}
    return json.dumps(profile, indent=2) + "\n"


def test_an_embedded_profile_is_installed(oci):
    worker = oci.new_worker(PROBE)
    result = worker.launch(seccomp=profile_text())
    assert result.returncode == 0, result.stderr
    assert worker.wait_for("up.out") == "up\n"
    assert worker.wait_for("mkdir.out") == "denied\n"
    assert worker.config.read_bytes().endswith(b'\n}\n}}}')  # the raw file, spliced in
    pid = worker.pid_file.read_text()
    assert re.search(r"^Seccomp:\s+2$", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert worker.reap().returncode == 0
    assert_nothing_left(oci, worker)


@pytest.mark.parametrize("profile, fragment", [
    ('{"defaultAction": "SCMP_ACT_ALLOW"}', "defaultAction: SCMP_ACT_ALLOW would let every"),
    ('{"defaultAction": "SCMP_ACT_LOG"}', "defaultAction: SCMP_ACT_LOG would let every"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/agent.sock"}',
     "listenerPath: a seccomp agent socket is not allowed"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": '
     '"SCMP_ACT_NOTIFY"}]}', "syscalls[0].action"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "archMap": []}', "archMap"),
])
def test_profiles_that_do_not_filter_are_refused(oci, profile, fragment):
    worker = oci.new_worker()
    assert_refused(oci, worker, worker.launch(seccomp=profile), 24,
                   f"$.ociRuntimeConfig.linux.seccomp.{fragment}")


@pytest.fixture
def required_profile(oci):
    """A root-owned profile file named by the policy (storm.oci.seccomp.profile)."""
    path = oci.launcher.conf.parent / "seccomp.json"
    path.write_text(profile_text())
    os.chown(path, 0, 0)
    os.chmod(path, 0o644)
    oci.add_policy({"storm.oci.seccomp.profile": str(path)})
    yield path
    path.unlink()


def test_the_policys_profile_is_required(oci, required_profile):
    worker = oci.new_worker(PROBE)
    assert_refused(oci, worker, worker.launch(), 24,
                   f"$.ociRuntimeConfig.linux.seccomp: is missing; the policy requires the "
                   f"profile {required_profile}")
    other = profile_text(denied=("mkdir",))
    assert_refused(oci, worker, worker.launch(seccomp=other), 24,
                   f"is not the profile {required_profile} the policy requires")
    # the same profile, written differently (compact): the same JSON, accepted
    same = json.dumps(json.loads(required_profile.read_text()), separators=(",", ":"))
    worker = oci.new_worker(PROBE)
    result = worker.launch(seccomp=same)
    assert result.returncode == 0, result.stderr
    assert worker.wait_for("mkdir.out") == "denied\n"
    assert worker.reap().returncode == 0
    assert_nothing_left(oci, worker)


def test_a_profile_file_root_alone_does_not_control_is_refused(oci, required_profile):
    os.chown(required_profile, uid_of(SUPERVISOR), 0)
    worker = oci.new_worker()
    result = worker.launch(seccomp=required_profile.read_text())
    assert_refused(oci, worker, result, 24, f"seccomp profile {required_profile} is not safe")
