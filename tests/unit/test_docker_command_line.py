"""The pure docker command-file check: tokens, allowlists, run rules (the profile verbs' pure
parts are in test_profile.py)."""

import pytest

from worker_launcher import commands
from worker_launcher.core.tokens import MAX_COMMAND_BYTES, image_ok, split_line, worker_id_ok  # noqa: F401
from worker_launcher.docker import command_line as cl
from worker_launcher.core.errors import ExitCode, LauncherError

WID = "8198e1f0-f323-4b9d-8625-e4fd640cd058"
WORKDIR = f"/storm/local/workers/{WID}"
RULES = cl.Rules(2001, 2001, (2001, 2100), (WORKDIR, "/data" + WORKDIR), "/storm")
SEED = (f"run --name={WID} --user=2001:2001 -d --net=host --read-only "
        f"-v /sys/fs/cgroup:/sys/fs/cgroup:ro -v /usr/share/storm:/usr/share/storm:ro "
        f"-v {WORKDIR}:{WORKDIR} -v {WORKDIR}/tmp:/tmp -v /etc/storm:/etc/storm:ro "
        f"--cgroup-parent=/storm --group-add 2001 --group-add 2100 --workdir={WORKDIR} "
        f"--cidfile={WORKDIR}/container.cid --cap-drop=ALL --security-opt no-new-privileges "
        f"--security-opt seccomp=/usr/share/storm/conf/seccomp.json --cpus=2.6 --memory=1024m "
        f"xxx.xxx.com:8080/storm/storm/rhel7:latest bash {WORKDIR}/storm-worker-script.sh")


def _validate(text, rules=RULES):
    return cl.validate(split_line(text.encode(), "cmd"), rules, "cmd")


def _refused(text, code=ExitCode.DOCKER_COMMAND_REJECTED):
    with pytest.raises(LauncherError) as caught:
        _validate(text)
    assert caught.value.code == code, caught.value.message
    return caught.value.message


def test_the_seed_command_line_is_accepted():
    request = _validate(SEED)
    assert request.subcommand == "run" and request.name == WID
    assert request.image == "xxx.xxx.com:8080/storm/storm/rhel7:latest"
    assert request.cidfile == f"{WORKDIR}/container.cid"
    assert request.seccomp == "/usr/share/storm/conf/seccomp.json"
    assert request.workdir == WORKDIR
    assert request.command == ["bash", f"{WORKDIR}/storm-worker-script.sh"]
    assert (f"{WORKDIR}/tmp", "/tmp", True) in request.binds
    assert ("/etc/storm", "/etc/storm", False) in request.binds
    assert request.tokens == SEED.split(" ")


@pytest.mark.parametrize("extra", ["--cpuset-cpus=0,1,3", "--cpuset-mems=0"])
def test_optional_run_options_storm_writes(extra):
    _validate(SEED.replace(" --cgroup-parent", f" {extra} --cgroup-parent"))


@pytest.mark.parametrize("dropped", [" --security-opt seccomp=/usr/share/storm/conf/seccomp.json",
                                     " --cpus=2.6", " --memory=1024m"])
def test_what_storm_writes_only_when_configured(dropped):
    _validate(SEED.replace(dropped, ""))


@pytest.mark.parametrize("extra", ["--rm", "--detach=true", "--detach=false", "--cpu-shares=2",
                                   "--net=none", "--privileged", "--cap-add=NET_ADMIN",
                                   "--device=/dev/fuse", "--config=/etc/docker"])
def test_run_options_storm_never_writes(extra):
    assert extra.split("=")[0] in _refused(SEED.replace(" -d ", f" -d {extra} "))


@pytest.mark.parametrize("dropped", ["-d", "--net=host", "--read-only", "--cgroup-parent=/storm",
                                     f"--workdir={WORKDIR}", f"--cidfile={WORKDIR}/container.cid",
                                     "--cap-drop=ALL", "--security-opt no-new-privileges",
                                     f"--name={WID}", "--user=2001:2001"])
def test_what_storm_always_writes_is_required(dropped):
    assert "is required" in _refused(SEED.replace(f" {dropped} ", " "))


@pytest.mark.parametrize("text", [
    f"wait {WID}", f"ps --filter=name={WID} --quiet=true", f"stop {WID}", f"rm {WID}",
    f"rm --force {WID}",
])
def test_other_subcommands_storm_writes(text):
    request = _validate(text)
    assert request.tokens == text.split(" ") and request.name == WID


OTHER = "11111111-2222-3333-4444-555555555555"


@pytest.mark.parametrize("text", [
    "ps", f"ps --quiet=true --filter=name={WID}", f"ps --filter=name={WID}",
    f"inspect --format='{{{{.State.Status}}}}' {WID}", f"inspect --format={{{{.State.Pid}}}} {WID}",
    f"stop --time=10 {WID}", "pull xxx.xxx.com:8080/storm/storm/rhel7:latest",
    f"--config=/etc/docker-storm rm {WID}", f"wait {OTHER}", f"rm --force {OTHER}",
    f"ps --filter=name={OTHER} --quiet=true", f"stop {OTHER}", f"exec {WID} sh",
    f"start {WID}", f"kill {WID}",
])
def test_what_storm_never_writes_is_refused(text):
    _refused(text)


@pytest.mark.parametrize("old,new,named", [
    ("--user=2001:2001", "--user=0:0", "--user=0:0"),
    ("--user=2001:2001", "--user=2001:2100", "2001:2100"),
    ("--group-add 2100", "--group-add 0", "--group-add 0"),
    ("--group-add 2100", "--group-add 02100", "02100"),
    (" -d ", " -d --privileged ", "--privileged"),
    (" -d ", " -d --cap-add=ALL ", "--cap-add=ALL"),
    (" -d ", " -d --device=/dev/kmsg ", "--device"),
    ("--cap-drop=ALL ", "", "--cap-drop=ALL is required"),
    ("--security-opt no-new-privileges ", "", "no-new-privileges is required"),
    ("seccomp=/usr/share/storm/conf/seccomp.json", "seccomp=unconfined", "seccomp=unconfined"),
    ("--net=host", "--net=container:abc", "container:abc"),
    ("/etc/storm:/etc/storm:ro", "/etc/storm:/etc/storm:z", ":z"),
    ("/etc/storm:/etc/storm:ro", "/etc/./storm:/x:ro", "/etc/./storm"),
    ("/etc/storm:/etc/storm:ro", "/etc/storm:x:ro", "'x'"),
    ("/etc/storm:/etc/storm:ro", "/etc//storm:/x:ro", "/etc//storm"),
    (f"--workdir={WORKDIR}", "--workdir=/", "--workdir=/"),
    (f"--cidfile={WORKDIR}/container.cid", f"--cidfile={WORKDIR}/../x.cid", "x.cid"),
    (f"--cidfile={WORKDIR}/container.cid", f"--cidfile={WORKDIR}", "--cidfile"),
    (f"--name={WID}", f"--name={WID.upper()}", "--name"),
    ("--cgroup-parent=/storm", "--cgroup-parent=/other", "/other"),
    ("--cpus=2.6", "--cpus=2.6.1", "--cpus"),
    ("--memory=1024m", "--memory=1024t", "--memory"),
    (f"bash {WORKDIR}/storm-worker-script.sh", "bash -c id", "-c"),
    (f"bash {WORKDIR}/storm-worker-script.sh", f"bash {WORKDIR}", WORKDIR),
    ("-d", "-d -d", "twice"),
    ("/etc/storm:/etc/storm:ro", "/etc/storm:/host:ro", "same path"),
    (f"-v {WORKDIR}/tmp:/tmp", f"-v {WORKDIR}/pids:/tmp", "same path"),
    (f"--workdir={WORKDIR}", f"--workdir={WORKDIR}/tmp", "worker's directory"),
    (f"--cidfile={WORKDIR}/container.cid", f"--cidfile={WORKDIR}/tmp/container.cid", "cid"),
    (f"--name={WID}", f"--name={OTHER}", "not the worker"),
    (f"bash {WORKDIR}/storm-worker-script.sh", f"bash {WORKDIR}/tmp/storm-worker-script.sh",
     "tmp/storm-worker-script.sh"),
    ("--memory=1024m", "--memory=1g", "--memory=1g"),
    ("--cpus=2.6", "--cpus=2", "--cpus=2"),
    ("--group-add 2100", "--group-add 2001", "twice"),
    (" --security-opt no-new-privileges", " --security-opt no-new-privileges"
     " --security-opt seccomp=/x.json", "one seccomp"),
])
def test_run_rules(old, new, named):
    assert old in SEED
    assert named in _refused(SEED.replace(old, new, 1))


@pytest.mark.parametrize("image", ["-image", "UPPER", "a/UPPER", "a b", "x:", "x:y:z", "/abs", ""])
def test_image_grammar(image):
    assert not image_ok(image)


@pytest.mark.parametrize("image", ["busybox", "busybox:1.36", "localhost:5000/a/b:c_d",
                                   "xxx.xxx.com:8080/storm/storm/rhel7:latest", "My-Host/a"])
def test_image_grammar_accepts(image):
    assert image_ok(image)


def test_image_grammar_matches_storms_pattern():
    import itertools
    import re

    storm = re.compile(r"^(([a-zA-Z0-9.-]+)(:\d+)?/)?([a-z0-9_./-]+)(:[\w.-]+)?$", re.ASCII)
    for parts in itertools.product(["", "a", "A", "-", ".", ":", "/", "1", "_"], repeat=4):
        image = "".join(parts)
        want = bool(storm.match(image)) and not image.startswith(("-", ".", ":", "/"))
        assert image_ok(image) == want, image


def test_bad_image_exits_40():
    _refused(SEED.replace(" xxx.xxx.com", " Bad!Image xxx.xxx.com").replace(
        "xxx.xxx.com:8080/storm/storm/rhel7:latest ", ""), ExitCode.INVALID_DOCKER_IMAGE)


@pytest.mark.parametrize("data", [b"run  -d", b"run -d\t", b"run\n-d", b"run -d\r", b"\xff run",
                                  b" run", b"run "])
def test_odd_bytes_are_refused(data):
    with pytest.raises(LauncherError) as caught:
        split_line(data, "cmd")
    assert caught.value.code == ExitCode.DOCKER_COMMAND_REJECTED


def test_split_line_is_exact():
    assert split_line(b"rm --force x\n", "f") == ["rm", "--force", "x"]
    assert split_line(b"", "f") == []
    with pytest.raises(LauncherError) as caught:
        split_line(b"x" * (MAX_COMMAND_BYTES + 1), "f")
    assert caught.value.code == ExitCode.CANNOT_READ_FILE


@pytest.mark.parametrize("text", ["exec x", "", "--config=tmp rm " + WID, "rm --force",
                                  f"rm -f {WID}", f"wait {WID} extra", "ps --all",
                                  f"inspect --format={{{{json .}}}} {WID}", f"stop --time=x {WID}",
                                  "pull -a busybox"])
def test_other_subcommand_refusals(text):
    with pytest.raises(LauncherError):
        _validate(text)


def test_worker_id_shape():
    assert worker_id_ok(WID)
    for bad in ("", WID + "0", WID.replace("-", "_"), "--format", WID[:-1] + "g"):
        assert not worker_id_ok(bad)


def test_command_rows():
    for name, handler in (("docker-run", "_docker_run"),
                          ("launch-docker-container", "_launch_docker_container"),
                          ("run-docker-cmd", "_run_docker_cmd"),
                          ("nsenter", "_nsenter"),
                          ("profile-docker-container", "_profile_docker_container"),
                          ("profile-oci-container", "_profile_oci_container")):
        command = commands.find(name.upper())
        assert command.handler.__name__ == handler and len(command.args) == 2


@pytest.mark.parametrize("parent, accepted", [("/storm", True), ("/storm/", True), ("/", False),
                                              ("/system.slice", False), ("/storm/other", False)])
def test_without_a_policy_parent_the_cgroup_parent_is_storms_default(parent, accepted):
    """As for OCI: with no storm.oci.cgroup.parent in the policy, Storm's default /storm is
    the only parent, never one the supervisor picks (another user's container cgroup, a
    system service's, the root)."""
    rules = cl.Rules(2001, 2001, (2001, 2100), (WORKDIR,), None)
    text = SEED.replace("--cgroup-parent=/storm", f"--cgroup-parent={parent}")
    if accepted:
        _validate(text, rules)
    else:
        with pytest.raises(LauncherError) as caught:
            _validate(text, rules)
        assert caught.value.code == ExitCode.DOCKER_COMMAND_REJECTED
        assert "Storm's default" in caught.value.message
