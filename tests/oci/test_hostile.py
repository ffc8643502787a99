"""Attacks and faults on runc-run / reap-layers through the installed binary: hostile
oci-config.json, links planted where the launcher writes, kill -9 at every step, a full run
root, runc missing or failing, layers that are corrupt or not squashfs. After each, nothing
of the launcher's may be left once reap-layers ran: no mount under the run root, no loop
device on the layers, no runc container, no container directory."""

import copy
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.env import SUPERVISOR, USER, gid_of_group, uid_of
from support.hostile import assert_refused
from support.oci import assert_nothing_left, loops_backed_by, mounted_under, runc_binary, runc_ids

SLEEPER = "echo up > $WORKDIR/up.out\nsleep 300\n"


def reap_all(oci, worker):
    result = worker.reap(keep=0)
    assert result.returncode == 0, result.stderr
    assert_nothing_left(oci, worker)


def _launch_refused(oci, worker, request, codes):
    result = worker.launch(request)
    assert_refused(result, codes)
    ids = runc_ids()  # (other test runs on this machine may have containers of their own)
    assert worker.container_id not in ids and request.get("containerId") not in ids
    assert mounted_under(oci.run_root) == [] and loops_backed_by(oci.layers) == []
    assert not (oci.run_root / worker.container_id).exists()
    return result


def _edits(worker, victims):
    """(name, edit of the request) pairs a hostile supervisor could send."""
    wid = worker.container_id.split("-", 1)[1]
    config = lambda request: request["ociRuntimeConfig"]  # noqa: E731
    mount = lambda source, mode="rw": {"destination": source, "type": "bind",  # noqa: E731
                                       "source": source, "options": [mode, "rbind", "rprivate"]}
    return [
        ("another user", lambda r: r.update(username="wlbob")),
        ("root", lambda r: r.update(username="root")),
        ("id traversal", lambda r: r.update(containerId=f"6700-{wid}/../../x")),
        ("id option", lambda r: r.update(containerId=f"--root=/tmp/{wid}")),
        ("relative pid file", lambda r: r.update(pidFile="container.pid")),
        ("dotted pid file", lambda r: r.update(pidFile=f"{worker.artifacts}/../../x.pid")),
        ("pid file of root's", lambda r: r.update(pidFile=str(victims.storm.victim / "secret"))),
        ("layer of root's", lambda r: r["layers"].append(
            {"mediaType": "application/vnd.squashfs", "path": str(victims.storm.victim / "secret")})),
        ("layer dotted", lambda r: r["layers"].append(
            {"mediaType": "application/vnd.squashfs", "path": "/a/../etc/shadow"})),
        ("layer not squashfs type", lambda r: r["layers"][0].update(mediaType="application/x-tar")),
        ("bind /", lambda r: config(r)["mounts"].append(mount("/"))),
        ("bind /etc rw", lambda r: config(r)["mounts"].append(mount("/etc"))),
        ("bind /proc", lambda r: config(r)["mounts"].append(mount("/proc", "ro"))),
        ("bind run root", lambda r: config(r)["mounts"].append(mount(str(worker.oci.run_root), "ro"))),
        ("bind another's dir", lambda r: config(r)["mounts"].append(mount(str(victims.bob)))),
        ("bind docker socket", lambda r: config(r)["mounts"].append(mount("/run/docker.sock"))),
        ("tmpfs mount", lambda r: config(r)["mounts"].append(
            {"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["rw"]})),
        ("suid option", lambda r: config(r)["mounts"][0]["options"].append("suid")),
        ("terminal", lambda r: config(r)["process"].update(terminal=True)),
        ("new privileges", lambda r: config(r)["process"].update(noNewPrivileges=False)),
        ("user field", lambda r: config(r)["process"].update(user={"uid": 0, "gid": 0})),
        ("capabilities", lambda r: config(r)["process"].update(capabilities={"bounding": ["CAP_SYS_ADMIN"]})),
        ("devices", lambda r: config(r)["linux"].update(devices=[{"path": "/dev/sda"}])),
        ("namespaces", lambda r: config(r)["linux"].update(namespaces=[])),
        ("cgroup root", lambda r: config(r)["linux"].update(cgroupsPath="/")),
        ("seccomp allow", lambda r: config(r)["linux"].update(seccomp={"defaultAction": "SCMP_ACT_ALLOW"})),
        ("hooks", lambda r: config(r).update(hooks={"prestart": [{"path": "/bin/sh"}]})),
        ("root path", lambda r: config(r).update(root={"path": "/"})),
    ]


def test_hostile_requests_are_refused_and_leave_nothing(oci, victims):
    worker = oci.new_worker(SLEEPER)
    before = victims.state()
    for name, edit in _edits(worker, victims):
        request = copy.deepcopy(worker.request)
        edit(request)
        result = _launch_refused(oci, worker, request, {24, 41, 30, 5, 21, 44})
        assert victims.state() == before, name
        assert result.stderr.count("\n") == 1, (name, result.stderr)
    result = worker.launch()  # the request itself is fine: each refusal was its edit's
    assert result.returncode == 0, result.stderr
    worker.wait_for("up.out")
    reap_all(oci, worker)


def test_hostile_json_documents(oci):
    worker = oci.new_worker(SLEEPER)
    path = oci.requests / "hostile.json"
    for data in (b"", b"\xff\xfe", b"[" * 100000 + b"]" * 100000, b'{"a":' * 5000 + b"1" + b"}" * 5000,
                 b"1" * 5000, b"NaN", b'{"username": "wlalice", "username": "root"}',
                 b'{"\\u0000": 1}', b"\x00" * 100, b"{" + b" " * (1 << 20) + b"}"):
        path.write_bytes(data)
        os.chown(path, uid_of(SUPERVISOR), gid_of_group())
        result = oci.launcher.run(USER, "run-oci-container", worker.workdir, path, worker.artifacts)
        assert_refused(result, {24, 31})
    assert mounted_under(oci.run_root) == []


@pytest.mark.parametrize("where", ["pid file", "config.json", "runc-out", "runc-err"])
def test_symlinks_planted_where_the_launcher_writes(oci, victims, where):
    worker = oci.new_worker(SLEEPER)
    wid = worker.container_id
    target = {"pid file": Path(worker.request["pidFile"]),
              "config.json": worker.workdir / "config.json",
              "runc-out": worker.artifacts / f"runc-{wid}.out",
              "runc-err": worker.artifacts / f"runc-{wid}.err"}[where]
    os.symlink(victims.storm.victim / "secret", target)
    before = victims.state()
    result = worker.launch()
    if where == "pid file":  # it must not exist beforehand: refused before anything is done
        assert_refused(result, {24})
    else:  # replaced (as the supervisor or the user), never written through
        assert result.returncode == 0, result.stderr
        assert not target.is_symlink()
        worker.wait_for("up.out")
    assert victims.state() == before
    reap_all(oci, worker)


def test_hard_link_at_runc_output_to_roots_file(oci, victims):
    worker = oci.new_worker(SLEEPER)
    out = worker.artifacts / f"runc-{worker.container_id}.err"
    os.link(victims.storm.victim / "secret", out)
    before = victims.state()
    result = worker.launch()
    assert result.returncode == 0, result.stderr
    assert victims.state() == before and (victims.storm.victim / "secret").read_text() == "root's\n"
    reap_all(oci, worker)


def test_layer_symlink_and_unreadable_layer(oci, victims, tmp_path):
    worker = oci.new_worker(SLEEPER)
    link = oci.requests / "layer-link.sqsh"
    os.symlink(oci.layers[0], link)
    private = tmp_path / "private.sqsh"
    private.write_bytes(Path(oci.layers[0]).read_bytes())
    os.chmod(private, 0o600)  # root's: the supervisor may not read it
    for path in (link, private):
        request = copy.deepcopy(worker.request)
        request["layers"][0]["path"] = str(path)
        _launch_refused(oci, worker, request, {30, 24})


@pytest.mark.parametrize("kind", ["not squashfs", "truncated", "garbage after the magic"])
def test_bad_layers_fail_cleanly(oci, tmp_path, kind):
    worker = oci.new_worker(SLEEPER)
    bad = tmp_path / "bad.sqsh"
    good = Path(oci.layers[1]).read_bytes()
    bad.write_bytes({"not squashfs": b"just text\n" * 1000, "truncated": good[:4096],
                     "garbage after the magic": good[:96] + os.urandom(len(good) - 96)}[kind])
    bad = oci.localise(bad)
    request = copy.deepcopy(worker.request)
    request["layers"][1]["path"] = str(bad)
    result = worker.launch(request)
    if result.returncode == 0:  # a lazily read corrupt image may mount; reap still cleans up
        reap_all(oci, worker)
    else:
        assert_refused(result, {44})
    assert mounted_under(oci.run_root) == []
    assert loops_backed_by([*oci.layers, bad]) == []


def _root_script(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(mode=0o755, exist_ok=True)
    path = directory / name
    path.write_text(text)
    os.chmod(path, 0o755)
    return path


@pytest.mark.parametrize("runc", ["missing", "failing", "killed"])
def test_runc_missing_failing_or_killed(oci, tmp_path, runc):
    tools = oci.launcher.prefix / f"tools-{tmp_path.name}"  # root's alone, as runc must be
    path = {"missing": lambda: tools / "no-runc",
            "failing": lambda: _root_script(tools, "runc", "#!/bin/sh\necho no >&2\nexit 3\n"),
            "killed": lambda: _root_script(tools, "runc", "#!/bin/sh\nkill -9 $$\n")}[runc]()
    oci.launcher.write_config({"worker.launcher.oci.runc": str(path),
                               "worker.launcher.policy": str(oci.launcher.conf.parent / "policy.yaml")})
    worker = oci.new_worker(SLEEPER)
    result = worker.launch()
    assert_refused(result, {44})
    assert_nothing_left(oci, worker)  # rolled back without reap-layers


def test_full_run_root(oci):
    """No room left in the run root (neither space nor inodes; the layer database already
    there): refused, 44, one line, nothing left; reap cleans up once there is room. (The
    container's own files go to a tmpfs of its own, so a run root short of space alone no
    longer stops a launch.)"""
    small = oci.launcher.prefix / f"small-run-root-{os.getpid()}"  # a root-only chain
    small.mkdir(mode=0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=64,mode=0755", "tmpfs",
                    str(small)], check=True)
    try:
        (small / "layers").mkdir(mode=0o700)
        (small / "layers" / "lock").touch(mode=0o600)
        fillers = small / "fillers"
        fillers.mkdir()
        with open(fillers / "data", "wb") as handle:
            try:
                handle.write(b"\0" * (1 << 20))
            except OSError:
                pass
        for index in range(1000):
            try:
                (fillers / str(index)).touch()
            except OSError:
                break
        oci.launcher.write_config({"worker.launcher.oci.run-root": str(small),
                                   "worker.launcher.policy": str(oci.launcher.conf.parent / "policy.yaml")})
        oci.run_root = small
        worker = oci.new_worker(SLEEPER)
        result = worker.launch()
        assert_refused(result, {44})
        assert_nothing_left(oci, worker)
        for filler in fillers.iterdir():
            filler.unlink()
        reap_all(oci, worker)
    finally:
        for point in reversed(mounted_under(small)):
            subprocess.run(["umount", "-l", point], capture_output=True)
        subprocess.run(["umount", "-l", str(small)], check=False)
        small.rmdir()


def _wait_no_runc_for(container_id: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = False
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"runc" in cmdline and container_id.encode() in cmdline and b"init" not in cmdline:
                busy = True
        if not busy:
            return
        time.sleep(0.05)


def _kill_launch_after(oci, worker, delay: float):
    path = worker.write()
    proc = subprocess.Popen([str(oci.launcher.binary), USER, "run-oci-container",
                             str(worker.workdir), str(path), str(worker.workdir / "artifacts")],
                            user=SUPERVISOR, group=gid_of_group(), extra_groups=[gid_of_group()],
                            env={"PATH": "/usr/bin:/bin"}, cwd="/", stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _wait_no_runc_for(worker.container_id)
    return proc.returncode


def test_kill_9_at_every_step_then_reap_leaves_nothing(oci):
    """A full launch takes a few hundred ms: kills spread over it land after each layer
    mount, after the overlay, after config.json, while runc runs and after it."""
    start = time.monotonic()
    worker = oci.new_worker(SLEEPER)
    assert worker.launch().returncode == 0
    duration = time.monotonic() - start
    reap_all(oci, worker)
    rounds = int(os.environ.get("WL_KILL_ROUNDS", "16"))
    rng = random.Random(7)
    left_behind = []
    for index in range(rounds):
        worker = oci.new_worker(SLEEPER)
        delay = duration * (index + rng.random()) / rounds
        _kill_launch_after(oci, worker, delay)
        left_behind.append((len(mounted_under(oci.run_root)), worker.container_id in runc_ids()))
        reap_all(oci, worker)
    # the kills landed at different stages of the launch (which stage each one hits depends
    # on timing; test_kill_9_right_before_and_after_runc and test_kill_9_mid_launch pin the
    # states between the mounts and runc deterministically)
    assert len(set(left_behind)) >= 2, left_behind
    assert any(container for _, container in left_behind), left_behind


def test_kill_9_right_before_and_after_runc(oci, tmp_path):
    """runc stands in for the moment right before runc runs (it kills the launcher and
    exits) and right after (it kills the launcher, then really runs the container)."""
    real = runc_binary()
    for name, body in (("before", "kill -9 $PPID\nexit 0\n"),
                       ("after", f"case \"$1\" in run) kill -9 $PPID;; esac\nexec {real} \"$@\"\n")):
        wrapper = _root_script(oci.launcher.prefix / f"{tmp_path.name}-{name}", "runc",
                               f"#!/bin/sh\n{body}")
        oci.launcher.write_config({"worker.launcher.oci.runc": str(wrapper),
                                   "worker.launcher.policy": str(oci.launcher.conf.parent / "policy.yaml")})
        worker = oci.new_worker(SLEEPER)
        result = worker.launch()
        assert result.returncode == -signal.SIGKILL or result.returncode == 128 + 9 or \
            result.returncode < 0, result
        _wait_no_runc_for(worker.container_id)
        oci.launcher.write_config({"worker.launcher.policy": str(oci.launcher.conf.parent / "policy.yaml")})
        reap_all(oci, worker)


def test_user_swapping_a_bind_source_for_a_symlink_during_the_launch(oci, racers_oci):
    """The user owns workdir (so workdir/tmp, which Storm binds as /tmp): swapping tmp for a
    symlink between the launcher's check and runc's mount must not bind what the symlink
    names (here a directory the user cannot reach on the host)."""
    hidden_parent = oci.storm.base / "hidden"
    hidden_parent.mkdir(mode=0o700)
    reachable_only_by_path = hidden_parent / "open"
    reachable_only_by_path.mkdir(mode=0o777)
    (reachable_only_by_path / "marker").write_text("breach\n")
    os.chmod(reachable_only_by_path / "marker", 0o644)
    script = ("cat /tmp/marker > $WORKDIR/breach.out 2> /dev/null\n"
              "echo up > $WORKDIR/up.out\nsleep 300\n")
    breaches = []
    for _ in range(int(os.environ.get("WL_RACE_ROUNDS", "25")) // 2):
        worker = oci.new_worker(script)
        assert oci.launcher.run(USER, "artifacts-dir", worker.workdir).returncode == 0
        racer = racers_oci(worker.workdir, reachable_only_by_path)
        result = worker.launch()
        racer.kill()
        racer.wait()
        if result.returncode == 0:
            worker.wait_for("up.out")
            breach = worker.workdir / "breach.out"
            if breach.exists() and breach.read_text():
                breaches.append(worker.container_id)
        reap_all(oci, worker)
    assert breaches == []


@pytest.fixture
def racers_oci():
    import pwd

    started = []

    def start(workdir, target):
        entry = pwd.getpwnam(USER)
        proc = subprocess.Popen(["python3", "-I", "-c", f"""
import ctypes, os
libc = ctypes.CDLL(None)
os.chdir({str(workdir)!r})
while True:
    try:
        if not os.path.lexists("tmp"):
            os.mkdir("tmp")
        if not os.path.lexists("tmp.link"):
            os.symlink({str(target)!r}, "tmp.link")
    except OSError:
        pass
    libc.renameat2(-100, b"tmp", -100, b"tmp.link", 2)
"""], user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], stderr=subprocess.DEVNULL)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_a_runc_the_supervisor_could_replace_is_never_run(oci):
    """runc runs as root: a runc binary (or a directory above it) the supervisor account
    can write is refused before anything is done (exit 22), whatever the config says."""
    wrapper = oci.storm.local / "runc"  # storm.local.dir is root's; the file the supervisor's
    wrapper.write_text("#!/bin/sh\ntouch /tmp/wl-runc-ran\nexec /usr/sbin/runc \"$@\"\n")
    os.chown(wrapper, uid_of(SUPERVISOR), gid_of_group())
    os.chmod(wrapper, 0o755)
    oci.launcher.write_config({"worker.launcher.oci.runc": str(wrapper)})
    worker = oci.new_worker()
    result = worker.launch()
    assert_refused(result, {22})
    assert str(wrapper) in result.stderr and not os.path.exists("/tmp/wl-runc-ran")
    assert mounted_under(oci.run_root) == [] and loops_backed_by(oci.layers) == []
