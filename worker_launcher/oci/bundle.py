"""Pure construction of runc's config.json from a validated OciSpec.

The user is taken from the user database (launch.user.identity), never from the request;
everything that grants privilege (capabilities, devices, namespaces, masked paths) is fixed
here and cannot be supplied by the caller.
"""

OCI_VERSION = "1.0.0"
STANDARD_MOUNTS = (
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
)
MASKED_PATHS = ("/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/proc/interrupts", "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                  "/proc/sysrq-trigger")
NAMESPACES = ("pid", "ipc", "uts", "mount")
NO_CAPABILITIES = {name: [] for name in ("bounding", "effective", "inheritable", "permitted",
                                         "ambient")}
# Added to every bind (Storm sends [ro|rw, rbind, rprivate]): the container's user gains
# nothing from set-id files or device nodes of a host directory.
BIND_HARDENING = ("nosuid", "nodev")


def runtime_config(spec, identity, rootfs: str, hostname: str, bind_sources: tuple) -> dict:
    """config.json for `runc run`. `bind_sources` are the resolved host paths of
    spec.mounts, in order (what the policy approved, not what the request named)."""
    binds = [{"destination": mount.destination, "type": "bind", "source": source,
              "options": list(mount.options) + list(BIND_HARDENING)}
             for mount, source in zip(spec.mounts, bind_sources)]
    resources = {"devices": [{"allow": False, "access": "rwm"}]}
    resources.update(spec.resources)
    linux = {
        "cgroupsPath": spec.cgroups_path,
        "resources": resources,
        "namespaces": [{"type": kind} for kind in NAMESPACES],
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if spec.seccomp is not None:
        linux["seccomp"] = spec.seccomp
    return {
        "ociVersion": OCI_VERSION,
        "hostname": hostname,
        "root": {"path": rootfs, "readonly": True},
        "process": {
            "terminal": False,
            "user": {"uid": identity.uid, "gid": identity.gid,
                     "additionalGids": [gid for gid in identity.groups if gid != identity.gid]},
            "args": list(spec.args),
            "env": list(spec.env),
            "cwd": spec.cwd,
            "noNewPrivileges": True,
            "capabilities": dict(NO_CAPABILITIES),
        },
        "mounts": [dict(mount) for mount in STANDARD_MOUNTS] + binds,
        "linux": linux,
    }
