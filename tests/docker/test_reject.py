"""Every rule of the docker command check, against the installed launcher and dockerd:
the refused command exits 39 (40 for an image), names the token, and starts nothing."""

import os

import pytest

from support.env import SUPERVISOR
from support.docker import chown_supervisor
from support.env import uid_of

USER = "wlalice"


def _replace(tokens, old, new):
    """Replace the token (or the `-v`/`--group-add`/`--security-opt` pair) starting with `old`."""
    out, index = [], 0
    while index < len(tokens):
        token = tokens[index]
        pair = token in ("-v", "--group-add", "--security-opt")
        whole = f"{token} {tokens[index + 1]}" if pair else token
        if whole.startswith(old):
            out += new.split(" ") if new else []
            old = "\0"  # only the first
        else:
            out += whole.split(" ")
        index += 2 if pair else 1
    return out


def _insert(tokens, new):
    return tokens[:2] + new.split(" ") + tokens[2:]


def _same(path) -> str:
    return f"{path}:{path}"


# (name, edit(tokens, env) -> tokens or text, expected code, text expected in the message)
CASES = [
    ("root user", lambda t, e: _replace(t, "--user=", "--user=0:0"), 39, "--user=0:0"),
    ("other user", lambda t, e: _replace(t, "--user=", "--user=2002:2002"), 39, "2002"),
    ("user gid 0", lambda t, e: _replace(t, "--user=", "--user=2001:0"), 39, "2001:0"),
    ("group root", lambda t, e: _insert(t, "--group-add 0"), 39, "--group-add 0"),
    ("launcher group", lambda t, e: _insert(t, "--group-add 1900"), 39, "--group-add 1900"),
    ("group name", lambda t, e: _insert(t, "--group-add docker"), 39, "docker"),
    ("group twice", lambda t, e: _insert(t, "--group-add 2001"), 39, "twice"),
    ("privileged", lambda t, e: _insert(t, "--privileged"), 39, "--privileged"),
    ("privileged=true", lambda t, e: _insert(t, "--privileged=true"), 39, "--privileged"),
    ("cap-add", lambda t, e: _insert(t, "--cap-add=SYS_ADMIN"), 39, "SYS_ADMIN"),
    ("device", lambda t, e: _insert(t, "--device=/dev/sda:/dev/sda"), 39, "/dev/sda"),
    ("rm", lambda t, e: _insert(t, "--rm"), 39, "--rm"),
    ("detach=false", lambda t, e: _insert(t, "--detach=false"), 39, "--detach"),
    ("cpu-shares", lambda t, e: _insert(t, "--cpu-shares=2"), 39, "--cpu-shares"),
    ("no -d", lambda t, e: _replace(t, "-d", ""), 39, "-d is required"),
    ("no read-only", lambda t, e: _replace(t, "--read-only", ""), 39, "--read-only"),
    ("no cap-drop", lambda t, e: _replace(t, "--cap-drop=ALL", ""), 39, "--cap-drop=ALL"),
    ("partial cap-drop", lambda t, e: _replace(t, "--cap-drop=ALL", "--cap-drop=NET_RAW"), 39,
     "NET_RAW"),
    ("seccomp unconfined", lambda t, e: _replace(t, "--security-opt seccomp",
                                                 "--security-opt seccomp=unconfined"), 39,
     "unconfined"),
    ("seccomp twice", lambda t, e: _insert(t, f"--security-opt seccomp={e.seccomp}"), 39,
     "one seccomp"),
    ("no seccomp while the policy names one", lambda t, e: _replace(t, "--security-opt seccomp",
                                                                    ""), 39, "requires"),
    ("apparmor", lambda t, e: _insert(t, "--security-opt apparmor=unconfined"), 39, "apparmor"),
    ("no no-new-privileges", lambda t, e: _replace(t, "--security-opt no-new", ""), 39,
     "no-new-privileges"),
    ("seccomp owned by the supervisor", lambda t, e: _replace(
        t, "--security-opt seccomp", f"--security-opt seccomp={e.commands}/seccomp.json"), 39,
     "the policy's profile is"),
    ("seccomp through a magic link", lambda t, e: _replace(
        t, "--security-opt seccomp", f"--security-opt seccomp=/proc/1/root{e.seccomp}"), 39,
     "the policy's profile is"),
    ("net none", lambda t, e: _replace(t, "--net=", "--net=none"), 39, "--net=none"),
    ("net bridge", lambda t, e: _replace(t, "--net=", "--net=bridge"), 39, "--net=bridge"),
    ("net of another container", lambda t, e: _replace(t, "--net=", "--net=container:x"), 39,
     "container:x"),
    ("pid host", lambda t, e: _insert(t, "--pid=host"), 39, "--pid=host"),
    ("ipc host", lambda t, e: _insert(t, "--ipc=host"), 39, "--ipc=host"),
    ("userns host", lambda t, e: _insert(t, "--userns=host"), 39, "--userns=host"),
    ("volume long form", lambda t, e: _insert(t, "--volume=/:/host"), 39, "--volume"),
    ("mount", lambda t, e: _insert(t, "--mount=type=bind,src=/,dst=/host"), 39, "--mount"),
    ("entrypoint", lambda t, e: _insert(t, "--entrypoint=/bin/sh"), 39, "--entrypoint"),
    ("env", lambda t, e: _insert(t, "-e LD_PRELOAD=/x"), 39, "-e"),
    ("memory in gigabytes", lambda t, e: _replace(t, "--memory=", "--memory=1g"), 39, "1g"),
    ("cpus not Java's double", lambda t, e: _replace(t, "--cpus=", "--cpus=2"), 39, "--cpus=2"),
    ("bind root", lambda t, e: _insert(t, "-v /:/:ro"), 39, "-v /:/:ro"),
    ("bind elsewhere in the container", lambda t, e: _insert(t, f"-v {e.etc}:/host:ro"), 39,
     "same path"),
    ("bind etc rw", lambda t, e: _insert(t, "-v /etc:/etc"), 39, "/etc"),
    ("bind docker socket", lambda t, e: _insert(t, "-v /run/docker.sock:/run/docker.sock:ro"),
     39, "docker.sock"),
    ("bind proc", lambda t, e: _insert(t, "-v /proc:/proc:ro"), 39, "/proc"),
    ("bind a magic link cwd", lambda t, e: _insert(t, f"-v {_same('/proc/1/cwd')}:ro"), 39,
     "/proc"),
    ("bind a magic link fd", lambda t, e: _insert(t, f"-v {_same('/proc/self/fd/3')}"), 39,
     "/proc"),
    ("bind a magic link root", lambda t, e: _insert(t, f"-v {_same('/proc/1/root/etc')}:ro"),
     39, "/proc"),
    ("bind the cgroup root rw", lambda t, e: _replace(t, "-v /sys/fs/cgroup",
                                                      "-v /sys/fs/cgroup:/sys/fs/cgroup"), 39,
     "/sys"),
    ("bind below the cgroup root rw", lambda t, e: _insert(
        t, "-v /sys/fs/cgroup/wltest-storm:/sys/fs/cgroup/wltest-storm"), 39, "/sys"),
    ("bind sysfs ro", lambda t, e: _insert(t, f"-v {_same('/sys/kernel')}:ro"), 39, "/sys"),
    ("bind rw mode", lambda t, e: _insert(t, f"-v {_same(e.etc)}:rw"), 39, ":rw"),
    ("bind options", lambda t, e: _insert(t, f"-v {_same(e.etc)}:ro,rshared"), 39, "rshared"),
    ("bind dotdot", lambda t, e: _insert(t, f"-v {e.etc}/../../../..:/x:ro"), 39, ".."),
    ("bind relative", lambda t, e: _insert(t, "-v etc:/x:ro"), 39, "etc:/x"),
    ("bind outside the policy", lambda t, e: _insert(t, f"-v {_same(e.commands)}:ro"), 39,
     "commands"),
    ("bind ro source rw", lambda t, e: _replace(t, f"-v {e.etc}", f"-v {_same(e.etc)}"), 39,
     "etc-storm"),
    ("bind missing source", lambda t, e: _insert(t, f"-v {_same(e.local / 'workers/nothere')}"),
     39, "nothere"),
    ("workdir elsewhere", lambda t, e: _replace(t, "--workdir=", "--workdir=/etc"), 39,
     "--workdir=/etc"),
    ("workdir a magic link", lambda t, e: _replace(t, "--workdir=", "--workdir=/proc/1/cwd"), 39,
     "/proc/1/cwd"),
    ("workdir below", lambda t, e: _replace(
        t, "--workdir=", f"--workdir={e.local}/workers/{t[1][7:]}/tmp"), 39, "--workdir="),
    ("cidfile elsewhere", lambda t, e: _replace(t, "--cidfile=", "--cidfile=/etc/x.cid"), 39,
     "/etc/x.cid"),
    ("cidfile a magic link", lambda t, e: _replace(t, "--cidfile=",
                                                   "--cidfile=/proc/1/cwd/container.cid"), 39,
     "/proc/1/cwd"),
    ("name not a worker id", lambda t, e: _replace(t, "--name=", "--name=evil"), 39,
     "--name=evil"),
    ("name of another worker", lambda t, e: _replace(
        t, "--name=", "--name=11111111-2222-3333-4444-555555555555"), 39, "not the worker"),
    ("name twice", lambda t, e: _insert(t, "--name=11111111-2222-3333-4444-555555555555"), 39,
     "twice"),
    ("cgroup parent elsewhere", lambda t, e: _replace(t, "--cgroup-parent=",
                                                      "--cgroup-parent=/"), 39,
     "--cgroup-parent=/"),
    ("image not allowed", lambda t, e: t[:-3] + ["busybox:latest"] + t[-2:], 40, "busybox"),
    ("image grammar", lambda t, e: t[:-3] + ["Evil!Image"] + t[-2:], 40, "Evil!Image"),
    ("image as option", lambda t, e: t[:-3] + ["--privileged", e.image] + t[-2:], 39,
     "--privileged"),
    ("command not bash", lambda t, e: t[:-2] + ["sh", t[-1]], 39, "sh"),
    ("script elsewhere", lambda t, e: t[:-1] + ["/etc/passwd"], 39, "/etc/passwd"),
    ("script a magic link", lambda t, e: t[:-1] + ["/proc/1/cwd/storm-worker-script.sh"], 39,
     "/proc/1/cwd"),
    ("another script in the workdir", lambda t, e: t[:-1] + [t[-1].replace("storm-", "x-")],
     39, "x-worker"),
    ("extra argument", lambda t, e: t + ["-c"], 39, "-c"),
    ("double space", lambda t, e: " ".join(t).replace(" -d ", "  -d "), 39, "empty token"),
    ("tab", lambda t, e: " ".join(t).replace(" -d ", " -d\t--privileged "), 39, "control"),
    ("two lines", lambda t, e: " ".join(t) + "\nrun --privileged", 39, "control"),
    ("dangling -v", lambda t, e: t[:2] + ["-v"], 39, "-v"),
    ("sub-command exec", lambda t, e: ["exec", t[1][len("--name="):], "sh"], 39, "exec"),
    ("config owned by the supervisor", lambda t, e: [f"--config={e.commands}"] + t, 39,
     "--config"),
    ("config a magic link", lambda t, e: ["--config=/proc/1/cwd"] + t, 39, "--config"),
    ("config root's", lambda t, e: ["--config=/root/.docker"] + t, 39, "--config"),
]


@pytest.mark.parametrize("name,edit,code,named", CASES, ids=[c[0] for c in CASES])
def test_run_rule_refusal(dstorm, name, edit, code, named):
    (dstorm.commands / "seccomp.json").write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    chown_supervisor(dstorm.commands / "seccomp.json")
    wid, workdir = dstorm.worker()
    tokens = edit(dstorm.run_tokens(wid, workdir), dstorm)
    result = dstorm.run(USER, "launch-docker-container", workdir, tokens)
    assert result.returncode == code, (result.returncode, result.stderr)
    assert named in result.stderr and "refusing" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
    assert not dstorm.exists(wid)


def test_bind_of_a_symlink_to_root_is_refused(dstorm):
    """The user plants workdir/tmp -> / ; binding it would give the container the host."""
    wid, workdir = dstorm.worker()
    link = dstorm.local / "workers" / wid / "escape"
    link.symlink_to("/")
    os.lchown(link, uid_of(USER), uid_of(USER))
    tokens = _insert(dstorm.run_tokens(wid, workdir), f"-v {link}:{link}")
    result = dstorm.run(USER, "launch-docker-container", workdir, tokens)
    assert result.returncode == 39 and "escape" in result.stderr and "symlink" in result.stderr
    assert not dstorm.exists(wid)
    tokens = _insert(dstorm.run_tokens(wid, workdir), f"-v {link}/etc:{link}/etc:ro")
    result = dstorm.run(USER, "launch-docker-container", workdir, tokens)
    assert result.returncode == 39 and "/etc" in result.stderr, result.stderr
    assert not dstorm.exists(wid)


@pytest.mark.parametrize("tokens", [
    "wait --help", "wait evil", "wait {wid} {wid}", "wait {other}", "ps", "ps -a",
    "ps --quiet=true --filter=name={wid}", "ps --filter=name={wid}", "ps --filter=name={other} "
    "--quiet=true", "ps --filter=label=x --quiet=true", "ps --filter=name={wid} --quiet=true -a",
    "inspect --format='{{{{.State.Status}}}}' {wid}", "inspect {wid}", "stop --time=10 {wid}",
    "stop --time=-1 {wid}", "stop --signal=KILL {wid}", "stop {other}", "rm -v {wid}",
    "rm --force --force {wid}", "rm --force {other}", "rm", "pull", "pull {image}", "version",
    "--config=/tmp rm {wid}", "exec {wid} sh", "start {wid}", "kill {wid}",
])
def test_other_subcommand_refusal(dstorm, tokens):
    """Only what DockerManager writes, about the worker whose directory the call names."""
    wid, workdir = dstorm.worker()
    other, _ = dstorm.worker()
    text = tokens.format(wid=wid, other=other, image=dstorm.image)
    result = dstorm.run(USER, "run-docker-cmd", workdir, text)
    assert result.returncode == 39, (text, result.returncode, result.stderr)
    assert "refusing" in result.stderr


def test_command_file_is_read_with_the_supervisors_rights(dstorm):
    wid, workdir = dstorm.worker()
    secret = dstorm.base / "root-only"
    secret.write_text(" ".join(dstorm.run_tokens(wid, workdir)))
    os.chmod(secret, 0o600)
    result = dstorm.launcher.run(USER, "launch-docker-container", workdir, secret)
    assert result.returncode == 30 and "root-only" in result.stderr
    assert not dstorm.exists(wid)
    assert SUPERVISOR  # the account the launcher ran as


def test_workdir_outside_the_policy_is_refused(dstorm):
    wid, workdir = dstorm.worker()
    result = dstorm.run(USER, "run-docker-cmd", dstorm.commands, ["rm", wid])
    assert result.returncode == 5, result.stderr
