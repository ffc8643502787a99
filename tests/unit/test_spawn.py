"""privileged.spawn, the one way to start a root child: the wait through a pidfd (exit codes,
signals, the time limit: the child is killed and reaped, never left behind), further
descriptors as 3, 4, ..., the child's umask, and output() capturing stdout and stderr."""

import os
import shutil

from worker_launcher.privileged import spawn

SH = "/bin/sh"


def _memfd(data: bytes) -> int:
    fd = os.memfd_create(f"test-{data.decode()}", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def test_descriptors_become_3_4_in_order_whatever_their_numbers():
    first, second = _memfd(b"first"), _memfd(b"second")
    # Hand them over swapped: each must land where asked, neither overwrite the other.
    out = os.memfd_create("out", os.MFD_CLOEXEC)
    try:
        code = spawn.run([SH, "-c", "cat <&3; echo; cat <&4; echo; ls -l /proc/$$/fd"],
                         stdout=out, fds=(second, first), env={"PATH": "/usr/bin:/bin"})
        lines = os.pread(out, 8192, 0).decode().splitlines()
    finally:
        for fd in (first, second, out):
            os.close(fd)
    assert code == 0 and lines[:2] == ["second", "first"]
    handed = sorted(line.split()[-4] for line in lines[2:] if "memfd:test" in line)
    assert handed == ["3", "4"], lines  # and no copy of either leaked under another number


def test_umask_is_the_childs_and_ours_is_kept():
    ours = os.umask(0o022)
    try:
        code, out, _ = spawn.output([SH, "-c", "umask"])
        assert code == 0 and out.strip() == b"0022"
        captured = os.memfd_create("out", os.MFD_CLOEXEC)
        try:
            assert spawn.run([SH, "-c", "umask"], stdout=captured, umask=0o027) == 0
            assert os.pread(captured, 64, 0).strip() == b"0027"
        finally:
            os.close(captured)
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(ours)


def test_output_captures_both_streams_and_the_exit_code():
    code, out, err = spawn.output([SH, "-c", "echo out; echo err >&2; exit 3"])
    assert (code, out, err) == (3, b"out\n", b"err\n")
    code, out, _ = spawn.output([SH, "-c", "head -c 5000 /dev/zero"], limit=100)
    assert code == 0 and len(out) == 100


def start(*argv) -> int:
    program = shutil.which(argv[0])
    return os.posix_spawn(program, [program, *argv[1:]], {})


def test_exit_codes_and_signals():
    assert spawn.wait_exit(start("true"), 10) == 0
    assert spawn.wait_exit(start("sh", "-c", "exit 7"), 10) == 7
    assert spawn.wait_exit(start("sh", "-c", "kill -9 $$"), 10) == -9


def test_time_limit_kills_and_reaps_the_child():
    pid = start("sleep", "30")
    assert spawn.wait_exit(pid, 0.1) is None
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # already reaped: nothing is left behind
    else:
        raise AssertionError(f"child {pid} was not reaped")


def test_kernels_without_pidfd_poll_instead(monkeypatch):
    def no_pidfd(pid):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    assert spawn.wait_exit(start("sh", "-c", "exit 3"), 10) == 3
    assert spawn.wait_exit(start("sleep", "30"), 0.1) is None
