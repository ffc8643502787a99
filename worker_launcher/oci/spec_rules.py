"""The typed field checks oci-config.json is validated with: every refusal is exit 24 with
the JSON path of the offending field. Pure."""

from ..core.errors import ExitCode, LauncherError
from ..core.config import DEFAULT_CGROUP_PARENT, normalize  # noqa: F401  (re-exported)

MAX_ITEMS = 4096
I64 = 2**63 - 1
_HEX = frozenset("0123456789abcdef")


def refuse(where: str, problem: str) -> LauncherError:
    return LauncherError(ExitCode.INVALID_CONFIG_FILE, f"oci-config.json {where}: {problem}")


def with_fields(obj, where: str, required: tuple, optional: tuple = (),
                refused: "dict | None" = None) -> dict:
    """`obj` as an object with exactly these keys: all of `required`, any of `optional`;
    `refused` maps keys with a reason of their own."""
    if not isinstance(obj, dict):
        raise refuse(where, "must be an object")
    for key in obj:
        if refused and key in refused:
            raise refuse(f"{where}.{key}", refused[key])
        if key not in required and key not in optional:
            raise refuse(f"{where}.{key}", "is not a field Storm writes")
    for key in required:
        if key not in obj:
            raise refuse(f"{where}.{key}", "is missing")
    return obj


def string(value, where: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty) or "\0" in value:
        raise refuse(where, "must be a " + ("" if allow_empty else "non-empty ")
                     + "string without NUL")
    return value


def path(value, where: str) -> str:
    """An absolute, normalized path: no '.', '..', '//' or trailing '/' (Storm's paths are
    built by joining absolute directories, so they never have them)."""
    normal = normalize(string(value, where))
    if normal != value:
        raise refuse(where, f"must be a normalized absolute path, got {value!r}")
    return normal


def the_list(value, where: str, limit: int = MAX_ITEMS, allow_empty: bool = True) -> list:
    if not isinstance(value, list) or len(value) > limit or (not value and not allow_empty):
        raise refuse(where, f"must be a list of {'at most' if allow_empty else '1 to'} "
                            f"{limit} items")
    return value


def integer(value, where: str, low: int = -I64 - 1, high: int = I64) -> int:
    """A JSON whole number (not a float, not true/false) from `low` to `high`."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise refuse(where, f"must be a whole number from {low} to {high}")
    return value


def one_of(value, names: frozenset) -> bool:
    """`value in names` for any JSON value (a list or object is unhashable)."""
    return isinstance(value, str) and value in names


def strings_are_clean(value, where: str = "$") -> None:
    """No string anywhere (keys included) holds NUL: every one ends up in a C string."""
    stack = [(value, where)]
    while stack:
        item, here = stack.pop()
        if isinstance(item, str):
            if "\0" in item:
                raise refuse(here, "holds a NUL character")
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\0" in key:
                    raise refuse(here, "has a key holding a NUL character")
                stack.append((child, f"{here}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{here}[{index}]") for index, child in enumerate(item))


def valid_container_id(text) -> bool:
    """Storm's `<port>-<worker id>` (RuncLibContainerManager.getContainerId): a port 1-65535
    written as Java's Integer.toString does (no sign, no leading zero), then the worker id,
    a lowercase canonical UUID (Utils.uuid)."""
    if not isinstance(text, str) or not 38 <= len(text) <= 42:
        return False
    port, _, uuid = text.partition("-")
    groups = uuid.split("-")
    return (port.isascii() and port.isdigit() and 1 <= len(port) <= 5 and port[0] != "0"
            and int(port) <= 65535
            and [len(group) for group in groups] == [8, 4, 4, 4, 12]
            and all(set(group) <= _HEX for group in groups))
