"""The privileged mount operations of the OCI runtime: the whole list.

Each runs as root, on paths this package built under the root-owned run root, and says why
it is safe. Errors carry the operation, source, target, flags and errno (kernel.py).
"""

import errno
import posix as os
import time

from . import kernel

LAYER_FLAGS = kernel.MS_RDONLY | kernel.MS_NOSUID | kernel.MS_NODEV
OVERLAY_FLAGS = kernel.MS_NOSUID | kernel.MS_NODEV
CONTAINER_FLAGS = kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC
# config.json (from a request and a seccomp profile of at most 1 MiB each), the overlay's
# upper and work directories, the mount points of at most 256 binds
CONTAINER_OPTIONS = "mode=0700,size=16m,nr_inodes=8192"
UNMOUNT_ATTEMPTS = 8


def mount_layer(layer_fd: int, layer_path: str, mountpoint: str) -> None:
    """Attach the layer to a loop device and mount it at `mountpoint`.

    Safe: `layer_fd` was opened with the supervisor account's rights, so nothing it could
    not read is exposed; the loop device is read-only and autoclear, so it is released when
    the mount goes, or at once if we die before mounting; squashfs is mounted read-only,
    nosuid, nodev on a root-owned directory of the run root."""
    loop_fd, device = kernel.attach_loop_ro(layer_fd, layer_path)
    try:
        kernel.mount(device, mountpoint, "squashfs", LAYER_FLAGS)
    finally:
        os.close(loop_fd)


def container_tmpfs(directory: str) -> None:
    """Mount a small tmpfs of its own on the container's new, empty run directory.

    Safe: `directory` is a root-owned 0700 entry this call just made in the root-only run
    root; the tmpfs is root's, 0700, nosuid, nodev, noexec (the overlay's own flags govern
    what runs from its root), capped in size and inodes. It holds config.json, the overlay's
    upper and work directories (the upper one only gets the mount points runc makes before
    it makes the root read-only: the worker can write nothing there) and the mount points of
    the staged binds. A reap then detaches it with everything on it in one lazy unmount
    (detach), where a disk-backed run root would cost an rmdir of each of its ~40
    directories (ext4: ~80 us each)."""
    kernel.mount("tmpfs", directory, "tmpfs", CONTAINER_FLAGS, CONTAINER_OPTIONS)


def detach(target: str) -> bool:
    """Lazily unmount `target` and everything mounted below it; False when nothing was
    mounted there. Safe: MNT_DETACH | UMOUNT_NOFOLLOW on a container directory of the run
    root, whose overlay the caller unmounted first: what goes is the container's tmpfs and
    the binds staged on it, which stop being reachable at once (no path leads into them, so
    nothing is ever deleted through them)."""
    try:
        kernel.umount2(target, kernel.MNT_DETACH | kernel.UMOUNT_NOFOLLOW)
    except OSError as err:
        if err.errno in (errno.EINVAL, errno.ENOENT):
            return False
        raise
    return True


def mount_overlay(lower_dirs: list, upper: str, work: str, target: str) -> None:
    """Mount the container's root: the layers read-only below, `upper` (root-owned, in the
    container's run directory) on top. Safe: every path is a root-owned directory under the
    run root built by us; nosuid and nodev; runc then makes the root read-only inside.

    `volatile` (Linux 5.10+; without it on older kernels, which refuse it with EINVAL): no
    sync of the upper layer ever, unmounting included, which would otherwise flush the whole
    file system the run root is on (~0.6 ms quiet, far more under concurrent writes). The
    upper layer is the container's own scratch space, removed with it at reap and never
    mounted again: the case the option was made for ("ovl: provide a mount option
    volatile", Linux c86243b090bc). Storm's workers keep what must last in their binds."""
    data = f"lowerdir={':'.join(lower_dirs)},upperdir={upper},workdir={work}"
    try:
        kernel.mount("overlay", target, "overlay", OVERLAY_FLAGS, data + ",volatile")
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
        kernel.mount("overlay", target, "overlay", OVERLAY_FLAGS, data)


def unmount(target: str) -> bool:
    """Unmount `target`, retrying with back-off while it is busy. False when nothing was
    mounted there. Safe: UMOUNT_NOFOLLOW, and only run-root paths are passed in."""
    delay = 0.01
    for attempt in range(UNMOUNT_ATTEMPTS):
        try:
            kernel.umount2(target, kernel.UMOUNT_NOFOLLOW)
            return True
        except OSError as err:
            if err.errno in (errno.EINVAL, errno.ENOENT):
                return False
            if err.errno != errno.EBUSY or attempt == UNMOUNT_ATTEMPTS - 1:
                raise
        time.sleep(delay)
        delay *= 2
    return False


def backing_matches(source: str, layer_fd: int) -> bool:
    """Whether the loop device `source` of a mounted layer is backed by the open layer file.
    Safe: read only (LOOP_GET_STATUS64); `source` comes from our own mountinfo."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        device, inode, _ = kernel.loop_backing(fd)
    except OSError:
        return False
    finally:
        os.close(fd)
    st = os.fstat(layer_fd)
    return (device, inode) == (st.st_dev, st.st_ino)
