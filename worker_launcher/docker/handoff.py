"""The container id hand-off of a `docker run`, made to survive a launcher killed at any point.

Storm finds a docker worker's container through `<workdir>/container.cid` (first line,
DockerManager.getContainerId). The docker client runs as root and writes its --cidfile with a
plain create that follows symlinks, so it never writes into the user's directory: the
launcher creates the container (`docker create`, whose stdout is the id), writes the id to
the cid file with the user's rights, and only then starts it. So a container that runs
always has its cid file.

A launcher killed between `docker create` and the start leaves a container that never ran
and no cid file. To finish that, a launch first writes a pending record,
<run root>/docker/<worker id> (root-only: the user and the cid file), and holds an flock on
it; every docker client it starts inherits the descriptor (its fd 3), so the lock is free only
once the launch and all its docker clients have ended. The launch removes the record when it
is done. A record whose lock is free belongs to a launch that was killed: every docker call
(`sweep`; Storm's next one for that worker is always `run-docker-cmd <wd> <wd>/docker-wait.sh`)
completes it first: the cid file is written if a container exists, a container that never
ran is removed (its bind sources were the dead launcher's), staging in the run root is
released, and the record goes.
"""

from __future__ import annotations

import errno
import posix as os
import stat

from ..core import identity
from ..core.errors import ExitCode, LauncherError, os_error_text

DOCKER_DIR = "docker"  # under the run root, root-only
CID_MODE = 0o640
OWN_WAIT_SECONDS = 20  # how long a call waits for the docker clients of its own worker's launch
POLL_SECONDS = 0.02


def directory(launch) -> str:
    """<run root>/docker, created root-owned 0700 if missing; refused if anyone but root could
    change it or a directory above it."""
    from ..paths import trust
    from ..paths.tree import make_dirs

    path = f"{launch.config.run_root}/{DOCKER_DIR}"
    try:
        make_dirs(path, 0o700)
        st = os.lstat(path)
    except OSError as err:
        raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                            f"cannot create {path}: {os_error_text(err)}") from None
    problem = trust.chain_problem(path)
    if problem or not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o077:
        raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                            f"{path} must be a root-only directory (mode 0700): "
                            f"{problem or 'it is not'}")
    return path


def _lock(fd: int, wait: float) -> bool:
    """Take the flock on `fd`, waiting at most `wait` seconds; False when it stays held."""
    import fcntl
    import time

    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)


class Pending:
    """The record of one launch, locked for as long as the launch or its docker clients live."""

    def __init__(self, path: str, fd: int):
        self.path, self.fd = path, fd

    @classmethod
    def create(cls, directory_path: str, name: str, user: str, cidfile: str) -> "Pending":
        """Write the record under a temporary name, lock it, then link it into place: a sweep
        never sees a record that is not complete and locked."""
        path = f"{directory_path}/{name}"
        temporary = f"{directory_path}/.{name}.{os.urandom(4).hex()}"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temporary, flags, 0o600)
        try:
            _lock(fd, 0)
            os.write(fd, f"user={user}\ncidfile={cidfile}\n".encode())
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                                    f"a launch of container {name} is in progress") from None
        except BaseException:
            os.close(fd)
            raise
        finally:
            os.unlink(temporary)
        return cls(path, fd)

    def finish(self) -> None:
        """The launch is done: the record goes (the lock with it)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)


def parse_record(data: bytes) -> dict:
    """user= and cidfile= of a record (written by us, in a root-only directory). Pure."""
    fields = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("user", "cidfile"):
            fields[key] = value
    return fields


def sweep(launch, directory_path: str, own: str | None) -> list:
    """Complete every abandoned launch in the directory (see the module docstring); the
    record of worker `own` is waited for a while if its launch is still running. Returns the
    worker ids completed. A record docker cannot be asked about yet stays for the next call."""
    from ..core.tokens import worker_id_ok

    completed = []
    names = sorted(os.listdir(directory_path))
    for name in names:
        path = f"{directory_path}/{name}"
        if name.startswith("."):
            _remove_if_unlocked(path)  # a record being written when its launch was killed
        elif worker_id_ok(name):
            if _complete_abandoned(launch, path, name, OWN_WAIT_SECONDS if name == own else 0):
                completed.append(name)
        elif name.split(".", 1)[0] not in names and not _live_legacy_launch(name):
            _release_staging(path)  # its launch ended without releasing it
    return completed


def _live_legacy_launch(name: str) -> bool:
    """Staging of a launcher before this one, <id>.<pid>.<random>, whose pid still runs."""
    parts = name.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    try:
        os.stat(f"/proc/{parts[1]}")
    except OSError:
        return False
    return True


def _release_staging(path: str) -> None:
    from .staging import release

    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            release(path)
    except OSError:
        pass


def _remove_if_unlocked(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if _lock(fd, 0):
            os.unlink(path)
    except OSError:
        pass
    finally:
        os.close(fd)


def _complete_abandoned(launch, path: str, name: str, wait: float) -> bool:
    from .staging import STAGING_SUFFIX

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _lock(fd, wait) or os.fstat(fd).st_nlink == 0:
            return False  # not a record, still running, or completed by another call
        record = parse_record(os.pread(fd, 4096, 0))
        complete(launch, name, record.get("user"), record.get("cidfile"))
        _release_staging(f"{path}{STAGING_SUFFIX}")
        os.unlink(path)
        return True
    except (LauncherError, OSError):
        return False  # docker cannot answer now: the next call tries again
    finally:
        os.close(fd)


def complete(launch, name: str, user: str | None, cidfile: str | None) -> None:
    """After a launch that did not finish: if a container `name` exists, its id goes to the
    cid file (with the user's rights); if it never ran, it is removed. Raises LauncherError
    when docker cannot be asked."""
    from . import client

    state = client.container_state(launch, name)
    if state is None:
        return
    container_id, status = state
    if cidfile and user:
        try:
            write_cidfile(launch, user, cidfile, container_id.encode())
        except LauncherError:
            pass  # the user's directory is gone or hostile: nothing to hand the id to
    if status == "created":
        client.query(launch, ["rm", "--force", name])


def write_cidfile(launch, user: str, cidfile: str, cid: bytes) -> None:
    """Write `cid` to `cidfile` with `user`'s rights: its directory located by descriptor
    (no symlink but root's, no magic link), whatever is at the name unlinked, never written
    through, the file created afresh."""
    from ..core import users
    from ..paths import files, resolve

    directory_path, name = cidfile.rsplit("/", 1)
    if user == launch.user.name:
        who = launch.user.identity
    else:  # completing another worker's launch
        config = launch.config
        who = users.lookup(user, config.min_user_id, config.banned_users).identity
    try:
        with identity.acting_as(who):
            fd, _ = resolve.open_path(directory_path, os.O_PATH | os.O_DIRECTORY)
            try:
                files.replace(fd, name, cid, CID_MODE)
            finally:
                os.close(fd)
    except LauncherError as err:
        raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                            f"cannot write {cidfile}: {err.message}") from None
    except OSError as err:
        raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                            f"cannot write {cidfile}: {os_error_text(err)}") from None
