"""A minimal busybox-static root filesystem for container tests and the demo."""

import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "cat", "echo", "id", "ls", "sleep", "touch", "mkdir", "readlink", "stat", "env",
           "true", "false", "grep", "wc", "ps", "kill", "pwd", "head", "test")
SKELETON = ("bin", "dev", "etc", "proc", "sys", "tmp", "run", "var", "usr/bin", "sys/fs/cgroup")


def busybox_available() -> bool:
    """True when Debian's busybox-static (a static binary) is installed."""
    if not os.path.exists(BUSYBOX):
        return False
    kind = subprocess.run(["file", "-b", BUSYBOX], capture_output=True, text=True).stdout \
        if shutil.which("file") else ""
    return "dynamically linked" not in kind


def make_rootfs(root: Path, applets=APPLETS) -> Path:
    """Write a busybox root into `root`: /bin/busybox plus one symlink per applet.
    /bin/bash hands over to busybox sh, because Storm runs `bash <script>` in the container."""
    for directory in SKELETON:
        (root / directory).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    os.chmod(root / "bin" / "busybox", 0o755)
    for applet in applets:
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    bash = root / "bin" / "bash"
    bash.write_text('#!/bin/sh\nexec /bin/sh "$@"\n')
    os.chmod(bash, 0o755)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    return root
