"""privileged.spawn's additions for the profile verbs: further descriptors as 3, 4, ...,
the child's umask, and output() capturing a child's stdout and stderr."""

import os

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
