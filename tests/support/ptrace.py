"""Stopping a process at an exact point, for tests of a stopped launcher: ptrace (the tests
run as root) steps it from syscall to syscall until a chosen one has returned, then leaves
it in a SIGSTOP stop, as if the supervisor's ^Z had caught it right there."""

import ctypes
import os
import platform
import signal
import time

PTRACE_SYSCALL, PTRACE_DETACH = 24, 17
PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_GET_SYSCALL_INFO = 0x4206, 0x4207, 0x420E
PTRACE_O_TRACESYSGOOD = 1
SYSCALL_ENTRY, SYSCALL_EXIT = 1, 2
WALL = 0x40000000
FCNTL = {"x86_64": 72, "aarch64": 25}
F_SETLK, F_SETLKW = 6, 7

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
_libc.ptrace.restype = ctypes.c_long


class _SyscallInfo(ctypes.Structure):
    _fields_ = [("op", ctypes.c_uint8), ("pad", ctypes.c_uint8 * 3), ("arch", ctypes.c_uint32),
                ("ip", ctypes.c_uint64), ("sp", ctypes.c_uint64),
                ("data", ctypes.c_uint64 * 7)]  # entry: nr, args[6]; exit: rval, is_error


def _ptrace(request: int, pid: int, addr=0, data=0) -> int:
    result = _libc.ptrace(request, pid, ctypes.c_void_p(addr), ctypes.c_void_p(data))
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), f"ptrace({request:#x}, {pid})")
    return result


def _info(pid: int) -> _SyscallInfo:
    info = _SyscallInfo()
    _ptrace(PTRACE_GET_SYSCALL_INFO, pid, ctypes.sizeof(info), ctypes.addressof(info))
    return info


def stop_after_lock(pid: int, release=None) -> None:
    """Leave process `pid` stopped (SIGSTOP) right after its first fcntl F_SETLK/F_SETLKW
    that succeeds: it then holds that record lock. `release` (optional) is called once the
    process is under control, e.g. to drop a lock the test held to keep it waiting."""
    number = FCNTL[platform.machine()]
    _ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACESYSGOOD)
    try:
        _ptrace(PTRACE_INTERRUPT, pid)
        os.waitpid(pid, WALL)
        if release is not None:
            release()
        pending, entered = 0, None
        while True:
            _ptrace(PTRACE_SYSCALL, pid, 0, pending)
            pending = 0
            _, status = os.waitpid(pid, WALL)
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                raise AssertionError(f"process {pid} ended before it took a lock")
            stop = os.WSTOPSIG(status)
            if stop == signal.SIGTRAP | 0x80:
                info = _info(pid)
                if info.op == SYSCALL_ENTRY:
                    entered = (info.data[0], info.data[2])  # nr, cmd
                elif info.op == SYSCALL_EXIT and entered is not None:
                    nr, cmd = entered
                    if nr == number and cmd in (F_SETLK, F_SETLKW) and info.data[0] == 0:
                        break
            elif status >> 16 == 0 and stop != signal.SIGTRAP:
                pending = stop  # a signal for the process: deliver it
    except BaseException:
        try:
            _ptrace(PTRACE_DETACH, pid, 0, 0)
        except OSError:
            pass
        raise
    _ptrace(PTRACE_DETACH, pid, 0, signal.SIGSTOP)
    # The kernel queues the SIGSTOP as the process resumes: wait until it has stopped, so
    # that a SIGCONT sent after this returns cannot come first.
    deadline = time.monotonic() + 10
    while state(pid) != "T":
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} did not stop")
        time.sleep(0.005)


def state(pid: int) -> str:
    """The one-letter state of `pid` in /proc (R, S, D, T, Z...)."""
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0]
