"""Public wrapper over the native shims: mount, umount2, loop devices and detached mounts.

There is no setns: the launcher never enters another namespace (see SECURITY.md, "Profiling").

Every call raises OSError with the errno and a message naming the operation and its
arguments (in the manner of runc's mountError), so a failure is one useful line.

umount2 and the mount flags come from _umount (native/umount.c), a plain extension module;
everything else from the cffi module _sys, loaded on first use: a reap, which only unmounts,
never loads cffi's backend (~0.8 ms of its CPU).
"""

import errno
import posix as os
import sys

from . import _umount

MS_RDONLY, MS_NOSUID, MS_NODEV = _umount.MS_RDONLY, _umount.MS_NOSUID, _umount.MS_NODEV
MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = (_umount.MS_NOEXEC, _umount.MS_BIND, _umount.MS_REC,
                                          _umount.MS_PRIVATE)
MNT_DETACH, UMOUNT_NOFOLLOW = _umount.MNT_DETACH, _umount.UMOUNT_NOFOLLOW

_FLAG_NAMES = ((MS_RDONLY, "ro"), (MS_NOSUID, "nosuid"), (MS_NODEV, "nodev"),
               (MS_NOEXEC, "noexec"), (MS_BIND, "bind"), (MS_REC, "rec"), (MS_PRIVATE, "private"))
LOOP_ATTACH_ATTEMPTS = 16
_FS_ENCODING = sys.getfilesystemencoding()  # os.fsencode's, with its surrogateescape


def _shim():
    """(ffi, lib) of the cffi module, loaded the first time a call needs it."""
    from ._sys import ffi, lib

    return ffi, lib


def __getattr__(name: str):
    """The loop-device flags, kernel.LO_FLAGS_*, from the cffi module (loaded then)."""
    if name in ("LO_FLAGS_READ_ONLY", "LO_FLAGS_AUTOCLEAR"):
        return getattr(_shim()[1], name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _error(what: str, code: int = None) -> OSError:
    if code is None:
        code = _shim()[0].errno
    return OSError(code, f"{what}: {os.strerror(code)}")


def _bytes(text: str) -> bytes:
    return text.encode(_FS_ENCODING, "surrogateescape")


def _c(text):
    return _shim()[0].NULL if text is None else _bytes(text)


def flag_names(flags: int) -> str:
    names = [name for bit, name in _FLAG_NAMES if flags & bit]
    rest = flags & ~sum(bit for bit, _ in _FLAG_NAMES)
    if rest:
        names.append(hex(rest))
    return ",".join(names) or "0"


def mount(source: str, target: str, fstype: "str | None", flags: int, data: "str | None" = None) -> None:
    _, lib = _shim()
    if lib.mount(_c(source), _c(target), _c(fstype), flags, _c(data)) != 0:
        raise _error(f"mount {source} on {target} (type {fstype}, flags {flag_names(flags)}"
                     f"{', data ' + data if data else ''})")


def umount2(target: str, flags: int = 0) -> None:
    code = _umount.umount2(_bytes(target), flags)
    if code:
        raise _error(f"umount {target}", code)


def attach_loop_ro(backing_fd: int, name: str) -> tuple:
    """Attach an open file to a free loop device, read-only and autoclear.

    Returns (loop_fd, device_path). The device detaches itself once the returned fd is
    closed and nothing mounts it, so a crash never leaks it. Another process may take the
    free device between LOOP_CTL_GET_FREE and our attach; then we try the next one.
    """
    _, lib = _shim()
    flags = lib.LO_FLAGS_READ_ONLY | lib.LO_FLAGS_AUTOCLEAR
    control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(LOOP_ATTACH_ATTEMPTS):
            number = lib.wl_loop_get_free(control)
            if number < 0:
                raise _error("LOOP_CTL_GET_FREE")
            path = f"/dev/loop{number}"
            loop_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            if _configure(loop_fd, backing_fd, flags, name):
                return loop_fd, path
            os.close(loop_fd)
        raise OSError(errno.EBUSY, f"no free loop device after {LOOP_ATTACH_ATTEMPTS} attempts")
    finally:
        os.close(control)


def _configure(loop_fd: int, backing_fd: int, flags: int, name: str) -> bool:
    """True when attached; False when another process took the device first."""
    ffi, lib = _shim()
    if lib.wl_loop_configure(loop_fd, backing_fd, flags, _c(name)) == 0:
        return True
    if ffi.errno == errno.EBUSY:
        return False
    if ffi.errno not in (errno.EINVAL, errno.ENOTTY):
        raise _error(f"LOOP_CONFIGURE for {name}")
    # Kernels before 5.8 have no LOOP_CONFIGURE: attach, then set the flags.
    if lib.wl_loop_set_fd(loop_fd, backing_fd) != 0:
        if ffi.errno == errno.EBUSY:
            return False
        raise _error(f"LOOP_SET_FD for {name}")
    if lib.wl_loop_set_status(loop_fd, flags, _c(name)) != 0:
        failure = _error(f"LOOP_SET_STATUS64 for {name}")
        lib.wl_loop_clear(loop_fd)
        raise failure
    return True


def loop_backing(loop_fd: int) -> tuple:
    """(device, inode, flags) of the file behind an attached loop device."""
    ffi, lib = _shim()
    device, inode, flags = ffi.new("uint64_t *"), ffi.new("uint64_t *"), ffi.new("uint32_t *")
    if lib.wl_loop_backing(loop_fd, device, inode, flags) != 0:
        raise _error("LOOP_GET_STATUS64")
    return device[0], inode[0], flags[0]


def detached_tmpfs() -> int:
    """A new tmpfs, root-only, nosuid/nodev/noexec, mounted nowhere (fsopen + fsmount): the
    returned descriptor is the one way to reach it; closing the last one dissolves it."""
    fd = _shim()[1].wl_detached_tmpfs()
    if fd < 0:
        raise _error("fsopen/fsmount of a detached tmpfs")
    return fd


def clone_tree(fd: int, what: str) -> int:
    """A detached recursive bind of the object behind `fd` (open_tree OPEN_TREE_CLONE)."""
    tree = _shim()[1].wl_clone_tree(fd)
    if tree < 0:
        raise _error(f"open_tree (clone) of {what}")
    return tree


def restrict_tree(dir_fd: int, name: str, read_only: bool, what: str) -> None:
    """nosuid, nodev (and read-only) on the mount at `name` of `dir_fd` ("": `dir_fd`
    itself) and every mount below it (mount_setattr, AT_RECURSIVE; ENOSYS before 5.12)."""
    if _shim()[1].wl_restrict_tree(dir_fd, _c(name), int(read_only)) != 0:
        raise _error(f"mount_setattr of {what}")


def move_into(tree_fd: int, dir_fd: int, name: str, what: str) -> None:
    """Attach the detached tree `tree_fd` on the entry `name` of directory `dir_fd`."""
    if _shim()[1].wl_move_into(tree_fd, dir_fd, _c(name)) != 0:
        raise _error(f"move_mount of {what} onto {name}")
