"""Storm's `launch-docker-container` and `run-docker-cmd` (our verb `docker-run`).

The command file is read with the supervisor account's rights and validated token by token
(command_line.py) before anything runs. Then the checks that need the file system: bind
sources located by descriptor and allowed by the policy (paths.sources), the seccomp
profile (seccomp.py), the image policy. Docker runs as root (topology users need no access to
docker) through client.py; its stdout and stderr are ours, and so is its exit status.

A `run` becomes `docker create` with the pinned sources (staging.py) and the profile's bytes,
the hand-off of the container id to the user's cid file (handoff.py), then `docker start`:
a container never runs before its cid file exists. Every docker call first completes the
launches a killed launcher left unfinished (handoff.sweep).
"""

from __future__ import annotations

import posix as os
import stat

from ..core import identity
from ..core.errors import ExitCode, LauncherError, by_policy
from ..paths import files
from ..paths.sources import open_bind_source
from . import command_line, handoff


def launch_docker_container(launch, workdir: str, command_file: str) -> int:
    """Storm `launch-docker-container <workdir> <file>`: set up the workdir, run the command."""
    return run_command_file(launch, workdir, command_file, prepare=True)


def run_docker_cmd(launch, workdir: str, command_file: str) -> int:
    """Storm `run-docker-cmd <workdir> <file>`: run the command (no directory set-up)."""
    return run_command_file(launch, workdir, command_file, prepare=False)


def docker_run(launch, workdir: str, command_file: str) -> int:
    """Our `docker-run <workdir> <file>`: as launch-docker-container for `run`, else as
    run-docker-cmd."""
    return run_command_file(launch, workdir, command_file, prepare=None)


def run_command_file(launch, workdir: str, command_file: str, prepare) -> int:
    from ..core import audit
    from ..core.tokens import MAX_COMMAND_BYTES, split_line

    from ..privileged.spawn import require_root_program

    require_root_program(launch.config.docker_binary)
    data = files.read_as_caller(command_file, MAX_COMMAND_BYTES)
    tokens = split_line(data, command_file)
    real_workdir = worker_directory(launch, workdir)
    who = launch.user.identity
    rules = command_line.Rules(who.uid, who.gid, who.groups, (workdir, real_workdir),
                               launch.policy.cgroup_parent)
    request = command_line.validate(tokens, rules, command_file)
    audit.note(docker=request.subcommand, container=request.name)
    if request.image:
        audit.note(image=request.image)
    if prepare or (prepare is None and request.subcommand == "run"):
        from ..classic.dirs import prepare_workdir

        prepare_workdir(launch, workdir)
    host = check_host(launch, request, command_file)
    try:
        directory = handoff.directory(launch)
        completed = handoff.sweep(launch, directory, request.name)
        if completed:
            audit.note(completed=",".join(completed))
        if request.subcommand == "run":
            code = run_container(launch, request, host, directory)
        else:
            from . import client

            code = client.run(launch, request.tokens)
    finally:
        host.close()
    return code


def worker_directory(launch, workdir: str) -> str:
    """The worker's directory, located with the supervisor account's rights and confined
    to the policy's storm directories; returns its resolved path."""
    from ..classic import dirs

    entry = dirs.locate_confined(launch, workdir)
    try:
        if entry.st is None or not stat.S_ISDIR(entry.st.st_mode):
            raise LauncherError(ExitCode.UNABLE_TO_BUILD_PATH, f"{workdir} is not a directory")
        return entry.path
    finally:
        entry.close()


class Host:
    """What check_host found: the opened bind sources [(fd, resolved path)] in the order of
    request.binds, and the memfd of the seccomp profile (or None)."""

    def __init__(self):
        self.sources, self.seccomp_fd = [], None

    def close(self) -> None:
        for fd, _ in self.sources:
            os.close(fd)
        if self.seccomp_fd is not None:
            os.close(self.seccomp_fd)
        self.sources, self.seccomp_fd = [], None


def check_host(launch, request, path: str) -> Host:
    """The checks of a validated `run` that need the file system or the policy."""
    host = Host()
    if request.subcommand != "run":
        return host
    reject = command_line.reject
    if not launch.policy.image_allowed(request.image):
        raise by_policy(reject(path, request.image,
                               f"image not allowed by the policy {launch.policy.source}",
                               ExitCode.INVALID_DOCKER_IMAGE))
    try:
        host.seccomp_fd = seccomp_profile(launch, request, path)
        for source, destination, writable in request.binds:
            try:
                fd, real = open_bind_source(launch.policy, launch.caller, source, writable)
            except LauncherError as err:
                spec = f"-v {source}:{destination}{'' if writable else ':ro'}"
                error = reject(path, spec, err.message)
                error.outcome = err.outcome
                raise error from None
            host.sources.append((fd, real))
    except BaseException:
        host.close()
        raise
    return host


def seccomp_profile(launch, request, path: str):
    """The memfd of the profile docker must apply, or None when there is none to apply.
    With a policy, the run must name exactly the policy's storm.oci.seccomp.profile (and
    must name one when the policy does); without, any file only root can change. Either
    way the file is read by descriptor and checked (seccomp.profile_problem)."""
    from ..paths import resolve, trust
    from . import seccomp

    named, policy = request.seccomp, launch.policy
    token = f"--security-opt seccomp={named}"
    if policy.configured:
        wanted = policy.seccomp_profile
        if named is None:
            if wanted is None:
                return None
            raise by_policy(command_line.reject(path, "run", f"the policy {policy.source} "
                                                             f"requires --security-opt "
                                                             f"seccomp={wanted}"))
        if wanted is None:
            raise by_policy(command_line.reject(path, token, f"the policy {policy.source} names "
                                                             f"no storm.oci.seccomp.profile"))
        try:
            with identity.acting_as(launch.caller):
                same = resolve.canonical(named) == wanted
        except LauncherError:
            same = False
        if not same:
            raise by_policy(command_line.reject(path, token, f"the policy's profile is {wanted}"))
        named = wanted
    elif named is None:
        return None
    try:  # with the caller's rights (Storm's supervisor reads the profile itself): root's
        # files tell the caller nothing (found by review); the chain must still be root's
        with identity.acting_as(launch.caller):
            _, text = trust.read_root_file(named, "seccomp profile", seccomp.MAX_PROFILE_BYTES,
                                           ExitCode.DOCKER_COMMAND_REJECTED)
    except LauncherError as err:
        raise command_line.reject(path, token, err.message) from None
    problem = seccomp.profile_problem(text)
    if problem:
        raise command_line.reject(path, token, f"{named} is not a usable seccomp profile: {problem}")
    return seccomp.sealed_copy(text.encode("utf-8"))


def create_tokens(request, paths: list, seccomp_fd) -> list:
    """`docker create` with what `docker run` was asked for: -d goes (create does not take
    it), the bind sources become their pinned paths, the seccomp profile the memfd docker
    gets as its fd 4, and --cidfile goes (the launcher writes the user's cid file)."""
    replace = {}
    for (source, destination, writable), staged in zip(request.binds, paths):
        mode = "" if writable else ":ro"
        replace[f"{source}:{destination}{mode}"] = f"{staged}:{destination}{mode}"
    if seccomp_fd is not None:
        replace[f"seccomp={request.seccomp}"] = "seccomp=/proc/self/fd/4"
    options = [replace.get(t, t) for t in request.options
               if t != "-d" and not t.startswith("--cidfile=")]
    return ["create", *options, request.image, *request.command]


def run_container(launch, request, host: Host, directory: str) -> int:
    """docker create, the cid file, docker start; see the module docstring. A launch that
    does not get as far as a started container leaves no container behind."""
    from . import staging

    record = handoff.Pending.create(directory, request.name, launch.user.name, request.cidfile)
    started = False
    try:
        stage, paths = staging.stage(directory, request.name, host.sources, keep=(record.fd,))
        try:
            fds = (record.fd,) if host.seccomp_fd is None else (record.fd, host.seccomp_fd)
            code, cid = create(launch, create_tokens(request, paths, host.seccomp_fd), fds)
            if code == 0:
                handoff.write_cidfile(launch, launch.user.name, request.cidfile, cid)
                code = start(launch, request.name, record.fd)
                started = code == 0
        finally:
            stage.close()
    finally:
        finish(launch, request.name, record, started)
    return code


def finish(launch, name: str, record, started: bool) -> None:
    """The record goes once the launch is settled: started, or undone (a container that
    never ran is removed). If docker cannot be asked, the record stays for the next call."""
    if not started:
        try:
            handoff.complete(launch, name, None, None)
        except LauncherError:
            os.close(record.fd)  # unlocked: the next docker call completes it
            return
    record.finish()


def start(launch, name: str, record_fd: int) -> int:
    """`docker start <name>`: its stdout (the name) is not passed on, as `docker run -d`
    prints only the id."""
    from . import client

    null = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
    try:
        return client.run(launch, ["start", name], stdout=null, fds=(record_fd,))
    finally:
        os.close(null)


def create(launch, tokens: list, fds: tuple) -> tuple:
    """(exit status, container id or None) of `docker create`; its stdout (the id) is
    passed on to ours, as `docker run -d` prints it."""
    from . import client

    out = os.memfd_create("wl-docker-create", os.MFD_CLOEXEC)
    try:
        code = client.run(launch, tokens, stdout=out, fds=fds)
        data = os.pread(out, 4096, 0)
    finally:
        os.close(out)
    files.write_all(1, data)
    cid = data.strip()
    if code == 0 and (len(cid) != 64 or not all(c in b"0123456789abcdef" for c in cid)):
        return ExitCode.DOCKER_RUN_FAILED, None
    return code, cid
