"""Reading /proc/self/mountinfo: which run-root paths are mounted, and which layers a live
overlay still uses. Parsing is pure."""


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\ooo octal escapes."""
    if "\\" not in field:
        return field
    out, index = [], 0
    while index < len(field):
        if field[index] == "\\" and field[index + 1:index + 4].isdigit():
            out.append(chr(int(field[index + 1:index + 4], 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return "".join(out)


class MountEntry:
    __slots__ = ("mount_point", "fstype", "source", "super_options", "root", "device")

    def __init__(self, mount_point, fstype, source, super_options, root="/", device=""):
        self.mount_point, self.fstype = mount_point, fstype
        self.source, self.super_options = source, super_options
        self.root = root  # the directory of its file system mounted there
        self.device = device  # major:minor of the file system

    def lower_dirs(self) -> list:
        if self.fstype != "overlay":
            return []
        dirs = []
        for option in self.super_options.split(","):
            key, _, value = option.partition("=")
            if key == "lowerdir":
                dirs += [part for part in value.split(":") if part]
            elif key == "lowerdir+":  # the new mount API lists one lower directory each
                dirs.append(value)
        return dirs


def parse(text: str) -> list:
    entries = []
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        fields, tail = before.split(" "), after.split(" ")
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        entries.append(MountEntry(_unescape(fields[4]), tail[0], _unescape(tail[1]),
                                  _unescape(tail[2]), _unescape(fields[3]), fields[2]))
    return entries


def read() -> list:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
        return parse(handle.read())


def mounted_at(entries: list) -> dict:
    """mount point -> the last (top) entry mounted there."""
    return {entry.mount_point: entry for entry in entries}


def layers_in_use(entries: list) -> set:
    """Every lower directory a mounted overlay lists: never to be unmounted."""
    used = set()
    for entry in entries:
        used.update(entry.lower_dirs())
    return used
