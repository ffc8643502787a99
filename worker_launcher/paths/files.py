"""Files read and written for someone: caller-named files read with the caller's rights, and
files replaced in a directory held by descriptor, written with whoever's rights the caller
of `replace` has taken (core.identity.acting_as)."""

import posix as os
import stat

from ..core import identity
from ..core.errors import ExitCode, LauncherError, os_error_text
from . import resolve

CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def read_as_caller(path: str, limit: int) -> bytes:
    """A regular file the caller names, read with the caller's rights (never through a
    symlink the caller could plant, a magic link or a pseudo file), at most `limit` bytes."""
    return read_as(identity.caller(), path, limit)


def read_as(who, path: str, limit: int) -> bytes:
    """As read_as_caller, with the rights of `who` (an identity.Identity)."""
    try:
        with identity.acting_as(who):
            fd, _ = resolve.open_path(path, os.O_RDONLY)
    except LauncherError as err:
        raise LauncherError(ExitCode.CANNOT_OPEN_FILE, f"cannot open {path}: {err.message}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LauncherError(ExitCode.CANNOT_READ_FILE, f"{path} is not a regular file")
        if st.st_size > limit:
            raise LauncherError(ExitCode.CANNOT_READ_FILE, f"{path} is larger than {limit} bytes")
        data = read_limited(fd, limit)
    except OSError as err:
        raise LauncherError(ExitCode.CANNOT_READ_FILE,
                            f"cannot read {path}: {os_error_text(err)}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise LauncherError(ExitCode.CANNOT_READ_FILE, f"{path} is larger than {limit} bytes")
    return data


def read_limited(fd: int, limit: int) -> bytes:
    """At most limit + 1 bytes from the open file `fd` (one more tells it was too large)."""
    chunks, total = [], 0
    while total <= limit:
        chunk = os.read(fd, limit + 1 - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def replace(dir_fd: int, name: str, data: bytes, mode: int) -> None:
    """Write `name` afresh in the directory `dir_fd`: whatever is there (a planted symlink
    included) is unlinked, never written through, and O_EXCL|O_NOFOLLOW refuses anything that
    appears in between. Raises OSError."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    fd = os.open(name, CREATE_NEW, mode, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)
        write_all(fd, data)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
