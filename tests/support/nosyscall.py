"""Run a command as the supervisor with one system call failing ENOSYS, as on an older
kernel: a seccomp filter installed as root (without no_new_privs, so the setuid bit of the
launcher still works), then setpriv to the supervisor and exec. x86_64 only."""

import platform
import sys

from support.env import GROUP, SUPERVISOR, require

FSOPEN = 430  # Linux 5.2; docker's detached staging needs it (and 6.15)
MOUNT_SETATTR = 442  # Linux 5.12 (RHEL 8 has neither)

_PROGRAM = r"""
import ctypes, os, struct, sys
def op(code, k, jt=0, jf=0):
    return struct.pack("HBBI", code, jt, jf, k)
program = b"".join([
    op(0x20, 4),                        # A = arch
    op(0x15, 0xC000003E, 0, 3),         # x86_64? else allow
    op(0x20, 0),                        # A = system call number
    op(0x15, int(sys.argv[1]), 0, 1),   # the one refused?
    op(0x06, 0x00050000 | 38),          # errno ENOSYS
    op(0x06, 0x7FFF0000),               # allow
])
class Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(22, 2, ctypes.byref(Program(len(program) // 8, program)), 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")
os.execv("/usr/bin/setpriv", ["setpriv", f"--reuid={sys.argv[2]}", f"--regid={sys.argv[3]}",
                              "--init-groups", *sys.argv[4:]])
"""


def argv(syscall: int, *command) -> list:
    """The argv running `command` as the supervisor (group: the launcher group) with
    `syscall` failing ENOSYS."""
    require(platform.machine() == "x86_64", "the seccomp filter is written for x86_64")
    return [sys.executable, "-I", "-c", _PROGRAM, str(syscall), SUPERVISOR, GROUP,
            *map(str, command)]
