"""Storm's `launch-docker-container` and `run-docker-cmd` (our verb `docker-run`).

The command file is read with the supervisor account's rights and validated token by token
(command_line.py) before anything runs. Then the checks that need the file system: bind
sources (resolved with the supervisor account's rights, never a symlink at the end, and
allowed by the policy), seccomp profiles and the --config directory (root-owned), the image
policy. Docker runs as root (topology users need no access to docker) with argv only, in a
new session and a minimal environment (privileged.spawn); its exit status is ours.

For `run`, bind sources are pinned and staged where only root can change them
(staging.py), and docker (root) writes the cid file there too rather than following a
symlink the user could plant at <workdir>/container.cid; the id is then copied to the
user's workdir with the user's rights.
"""

from __future__ import annotations

import os
import stat

from ..core import identity
from ..core.errors import ExitCode, LauncherError, by_policy, os_error_text
from ..paths import files
from . import command_line, staging

DOCKER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
CID_MODE = 0o640


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
    from ..core.tokens import MAX_COMMAND_BYTES, split_line

    data = files.read_as_caller(command_file, MAX_COMMAND_BYTES)
    tokens = split_line(data, command_file)
    real_workdir = worker_directory(launch, workdir)
    who = launch.user.identity
    rules = command_line.Rules(who.uid, who.gid, who.groups, (workdir, real_workdir),
                               launch.policy.cgroup_parent)
    request = command_line.validate(tokens, rules, command_file)
    if prepare or (prepare is None and request.subcommand == "run"):
        from ..classic.dirs import prepare_workdir

        prepare_workdir(launch, workdir)
    sources = check_host(launch, request, command_file)
    if request.subcommand == "run":
        return run_container(launch, request, sources)
    return run_docker(launch, request.tokens)


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


def check_host(launch, request, path: str) -> list:
    """The checks of a validated request that need the file system or the policy. Returns
    the opened bind sources: [(fd, real path)] in the order of request.binds."""
    reject = command_line.reject
    if request.image and not launch.policy.image_allowed(request.image):
        raise by_policy(reject(path, request.image,
                               f"image not allowed by the policy {launch.policy.source}",
                               ExitCode.INVALID_DOCKER_IMAGE))
    from ..paths import trust

    if request.config_dir:
        problem = trust.chain_problem(request.config_dir)
        if problem:
            raise reject(path, f"--config={request.config_dir}", problem)
    for profile in request.seccomp:
        problem = trust.chain_problem(profile) or _not_regular(profile)
        if problem:
            raise reject(path, f"--security-opt seccomp={profile}", problem)
    sources = []
    try:
        for source, destination, writable in request.binds:
            fd, real = staging.open_source(launch, source)
            if fd is not None:
                sources.append((fd, real))
            problem = real if fd is None else launch.policy.bind_refusal(real, writable)
            if problem:
                spec = f"-v {source}:{destination}{'' if writable else ':ro'}"
                error = reject(path, spec, problem)
                raise error if fd is None else by_policy(error)
    except LauncherError:
        for fd, _ in sources:
            os.close(fd)
        raise
    return sources


def _not_regular(path: str) -> str | None:
    try:
        if stat.S_ISREG(os.stat(path).st_mode):
            return None
    except OSError as err:
        return f"cannot stat {path}: {os_error_text(err)}"
    return f"{path} is not a regular file"


def run_docker(launch, tokens: list) -> int:
    """docker with the validated tokens, as root (privileged.spawn: argv only, a fixed
    environment, a new session), its stdout and stderr ours; returns its exit status (a
    signal N as 128 + N)."""
    from ..privileged import spawn

    docker = launch.config.docker_binary
    try:
        code = spawn.run([docker, *tokens], env=DOCKER_ENV)
    except OSError as err:
        raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                            f"cannot execute {docker}: {os_error_text(err)}") from None
    return code if code >= 0 else 128 - code


def run_container(launch, request, sources: list) -> int:
    """`docker run` with staged bind sources and a root-only cid file; wait for docker,
    undo the staging, then hand the container id to the user's cid file."""
    stage = staging.Staging(launch, request.name)
    try:
        replace = {f"--cidfile={request.cidfile}": f"--cidfile={stage.cidfile}"}
        for (source, destination, writable), (fd, real) in zip(request.binds, sources):
            mode = "" if writable else ":ro"
            replace[f"{source}:{destination}{mode}"] = f"{stage.bind(fd, real)}:{destination}{mode}"
        code = run_docker(launch, [replace.get(t, t) for t in request.tokens])
        cid = stage.read_cid()
    finally:
        stage.close()
        for fd, _ in sources:
            os.close(fd)
    if request.cidfile and cid is not None:
        write_user_cidfile(launch, request.cidfile, cid)
    return code


def write_user_cidfile(launch, cidfile: str, cid: bytes) -> None:
    """Write the container id to `cidfile` with the user's rights, replacing whatever is
    there (unlink never follows a symlink; O_EXCL|O_NOFOLLOW refuses a new one)."""
    directory, name = cidfile.rsplit("/", 1)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with identity.acting_as(launch.user.identity):
        try:
            dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                try:
                    os.unlink(name, dir_fd=dir_fd)
                except FileNotFoundError:
                    pass
                fd = os.open(name, flags, CID_MODE, dir_fd=dir_fd)
            finally:
                os.close(dir_fd)
            try:
                os.fchmod(fd, CID_MODE)
                os.write(fd, cid)
            finally:
                os.close(fd)
        except OSError as err:
            raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                                f"cannot write {cidfile}: {os_error_text(err)}") from None
