"""cffi (API mode) builds of two of the launcher's three native modules:

- worker_launcher.privileged._sys: the raw mount, loop-device and detached-mount calls,
  wrapped (with OSError carrying the context) by worker_launcher/privileged/kernel.py;
- worker_launcher.paths._resolve: openat2(2), wrapped by worker_launcher/paths/resolve.py.

The third, worker_launcher.privileged._umount (umount2 and the mount flags, which a reap needs
without loading cffi's backend), is a plain extension module: umount.c, built by the Makefile.

Run by the Makefile: python3 sys_build.py <output directory>.
"""

import os
import sys
import sysconfig

import cffi

CDEF = """
#define LO_FLAGS_READ_ONLY ...
#define LO_FLAGS_AUTOCLEAR ...

int mount(const char *source, const char *target, const char *fstype,
          unsigned long flags, const void *data);

int wl_loop_get_free(int control_fd);
int wl_loop_configure(int loop_fd, int backing_fd, uint32_t flags, const char *name);
int wl_loop_set_fd(int loop_fd, int backing_fd);
int wl_loop_set_status(int loop_fd, uint32_t flags, const char *name);
int wl_loop_clear(int loop_fd);
int wl_loop_backing(int loop_fd, uint64_t *device, uint64_t *inode, uint32_t *flags);

int wl_detached_tmpfs(void);
int wl_clone_tree(int fd);
int wl_move_into(int tree_fd, int dir_fd, const char *name);
int wl_restrict_tree(int dir_fd, const char *name, int read_only);
"""

SOURCE = r"""
#include <errno.h>
#include <linux/loop.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef LOOP_CONFIGURE
#define LOOP_CONFIGURE 0x4C0A
struct loop_config {
    uint32_t fd;
    uint32_t block_size;
    struct loop_info64 info;
    uint64_t __reserved[8];
};
#endif

static void wl_fill_info(struct loop_info64 *info, uint32_t flags, const char *name)
{
    memset(info, 0, sizeof *info);
    info->lo_flags = flags;
    if (name)
        strncpy((char *)info->lo_file_name, name, LO_NAME_SIZE - 1);
}

static int wl_loop_get_free(int control_fd)
{
    return ioctl(control_fd, LOOP_CTL_GET_FREE);
}

static int wl_loop_configure(int loop_fd, int backing_fd, uint32_t flags, const char *name)
{
    struct loop_config config;
    memset(&config, 0, sizeof config);
    config.fd = (uint32_t)backing_fd;
    wl_fill_info(&config.info, flags, name);
    return ioctl(loop_fd, LOOP_CONFIGURE, &config);
}

static int wl_loop_set_fd(int loop_fd, int backing_fd)
{
    return ioctl(loop_fd, LOOP_SET_FD, backing_fd);
}

static int wl_loop_set_status(int loop_fd, uint32_t flags, const char *name)
{
    struct loop_info64 info;
    wl_fill_info(&info, flags, name);
    return ioctl(loop_fd, LOOP_SET_STATUS64, &info);
}

static int wl_loop_clear(int loop_fd)
{
    return ioctl(loop_fd, LOOP_CLR_FD, 0);
}

static int wl_loop_backing(int loop_fd, uint64_t *device, uint64_t *inode, uint32_t *flags)
{
    struct loop_info64 info;
    if (ioctl(loop_fd, LOOP_GET_STATUS64, &info) != 0)
        return -1;
    *device = info.lo_device;
    *inode = info.lo_inode;
    *flags = info.lo_flags;
    return 0;
}

/* The new mount API (Linux 5.2; one syscall number on every architecture). Older headers
   (RHEL 8) lack it, so the ABI is spelled out here. */
#define WL_SYS_open_tree 428
#define WL_SYS_move_mount 429
#define WL_SYS_fsopen 430
#define WL_SYS_fsconfig 431
#define WL_SYS_fsmount 432
#define WL_OPEN_TREE_CLONE 1
#define WL_OPEN_TREE_CLOEXEC 02000000
#define WL_AT_EMPTY_PATH 0x1000
#define WL_AT_RECURSIVE 0x8000
#define WL_MOVE_MOUNT_F_EMPTY_PATH 0x4
#define WL_FSOPEN_CLOEXEC 1
#define WL_FSMOUNT_CLOEXEC 1
#define WL_FSCONFIG_SET_STRING 1
#define WL_FSCONFIG_CMD_CREATE 6
#define WL_MOUNT_ATTR_NOSUID 0x2
#define WL_MOUNT_ATTR_NODEV 0x4
#define WL_MOUNT_ATTR_NOEXEC 0x8

/* A new tmpfs (mode 0700, a few inodes) mounted nowhere: the returned descriptor is the only
   way to reach it, and the kernel dissolves it when the last descriptor goes. */
static int wl_detached_tmpfs(void)
{
    int fs = (int)syscall(WL_SYS_fsopen, "tmpfs", WL_FSOPEN_CLOEXEC);
    if (fs < 0)
        return -1;
    int tree = -1;
    if (syscall(WL_SYS_fsconfig, fs, WL_FSCONFIG_SET_STRING, "mode", "0700", 0) == 0
        && syscall(WL_SYS_fsconfig, fs, WL_FSCONFIG_SET_STRING, "nr_inodes", "1024", 0) == 0
        && syscall(WL_SYS_fsconfig, fs, WL_FSCONFIG_SET_STRING, "size", "64k", 0) == 0
        && syscall(WL_SYS_fsconfig, fs, WL_FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
        tree = (int)syscall(WL_SYS_fsmount, fs, WL_FSMOUNT_CLOEXEC,
                            WL_MOUNT_ATTR_NOSUID | WL_MOUNT_ATTR_NODEV | WL_MOUNT_ATTR_NOEXEC);
    int saved = errno;
    close(fs);
    errno = saved;
    return tree;
}

/* A detached copy of the mount tree at the open file `fd` (a bind, recursive). */
static int wl_clone_tree(int fd)
{
    return (int)syscall(WL_SYS_open_tree, fd, "",
                        WL_OPEN_TREE_CLONE | WL_OPEN_TREE_CLOEXEC | WL_AT_EMPTY_PATH | WL_AT_RECURSIVE);
}

/* Attach the detached tree `tree_fd` on the entry `name` of the directory `dir_fd`. */
static int wl_move_into(int tree_fd, int dir_fd, const char *name)
{
    return (int)syscall(WL_SYS_move_mount, tree_fd, "", dir_fd, name, WL_MOVE_MOUNT_F_EMPTY_PATH);
}

/* mount_setattr (Linux 5.12): nosuid and nodev (and read-only) added to the mount at `name`
   of `dir_fd` ("" for `dir_fd` itself) and to every mount below it; nothing is cleared. */
#define WL_SYS_mount_setattr 442
#define WL_MOUNT_ATTR_RDONLY 0x1
#define WL_AT_SYMLINK_NOFOLLOW 0x100
struct wl_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

static int wl_restrict_tree(int dir_fd, const char *name, int read_only)
{
    struct wl_mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = WL_MOUNT_ATTR_NOSUID | WL_MOUNT_ATTR_NODEV
                    | (read_only ? WL_MOUNT_ATTR_RDONLY : 0);
    unsigned int flags = WL_AT_RECURSIVE | WL_AT_SYMLINK_NOFOLLOW
                         | (name[0] == '\0' ? WL_AT_EMPTY_PATH : 0);
    return (int)syscall(WL_SYS_mount_setattr, dir_fd, name, flags, &attr, sizeof attr);
}
"""


RESOLVE_CDEF = """
#define RESOLVE_NO_XDEV ...
#define RESOLVE_NO_MAGICLINKS ...
#define RESOLVE_NO_SYMLINKS ...
#define RESOLVE_BENEATH ...
int wl_openat2(int dir_fd, const char *path, uint64_t flags, uint64_t resolve);
"""

# openat2 arrived in Linux 5.6; RHEL 8's headers lack it, so the ABI is spelled out here
# (the syscall number is 437 on every architecture).
RESOLVE_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_NO_SYMLINKS 0x04
#define RESOLVE_BENEATH 0x08

struct wl_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

static int wl_openat2(int dir_fd, const char *path, uint64_t flags, uint64_t resolve)
{
    struct wl_open_how how;
    memset(&how, 0, sizeof how);
    how.flags = flags;
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dir_fd, path, &how, sizeof how);
}
"""

HARDENING = {"extra_compile_args": ["-O2", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"],
             "extra_link_args": ["-Wl,-z,relro,-z,now"]}


def link_command_without_rpath(command: str) -> str:
    """The interpreter's shared-object link command without -rpath/-R options. Interpreters
    built into their own prefix (pyenv, /opt builds) link their lib directory into every
    extension; no native file of the launcher may carry an RPATH or RUNPATH, a library
    search path in code that root runs."""
    words, kept, skip_next = command.split(), [], False
    for word in words:
        if skip_next:
            skip_next = False
        elif word in ("-Wl,-rpath", "-Wl,--rpath", "-Wl,-R", "-rpath", "-R"):
            skip_next = True  # the directory follows as the next word
        elif word.startswith(("-Wl,-rpath,", "-Wl,--rpath,", "-Wl,-rpath=", "-Wl,--rpath=",
                              "-Wl,-R,", "-Wl,-R/", "-R/")):
            pass
        else:
            kept.append(word)
    return " ".join(kept)


def main(out_dir: str) -> None:
    # distutils (and setuptools' copy) take LDSHARED from the environment when it is set.
    os.environ["LDSHARED"] = link_command_without_rpath(
        os.environ.get("LDSHARED") or sysconfig.get_config_var("LDSHARED") or "cc -shared")
    for name, cdef, source in (("worker_launcher.privileged._sys", CDEF, SOURCE),
                               ("worker_launcher.paths._resolve", RESOLVE_CDEF, RESOLVE_SOURCE)):
        builder = cffi.FFI()
        builder.cdef(cdef)
        builder.set_source(name, source, **HARDENING)
        builder.compile(tmpdir=out_dir, verbose=False)


if __name__ == "__main__":
    main(sys.argv[1])
