"""Tokens of Storm's one-line command files, and the shapes of its names. Pure."""

from ..core.errors import ExitCode, LauncherError

MAX_COMMAND_BYTES = 128 * 1024
_HEX = frozenset("0123456789abcdef")
_DIGITS = frozenset("0123456789")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
_REPO_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_./-")
_TAG_CHARS = _HOST_CHARS | {"_"}


def one_line_text(data: bytes, path: str, what: str, code: int) -> str:
    """A command file's one line: at most MAX_COMMAND_BYTES, one trailing newline allowed,
    ASCII without control characters; refused with `code` naming the file otherwise."""
    if len(data) > MAX_COMMAND_BYTES:
        raise LauncherError(ExitCode.CANNOT_READ_FILE,
                            f"{what} {path} is larger than {MAX_COMMAND_BYTES} bytes")
    if data.endswith(b"\n"):
        data = data[:-1]
    text = data.decode("ascii", "replace")
    if not data.isascii():
        raise refusal(code, what, path, text, "not ASCII text")
    for char in text:
        if char < " " or char == "\x7f":
            raise refusal(code, what, path, text,
                          f"control character {char!r} (the file must be one line)")
    return text


def refusal(code: int, what: str, path: str, text: str, why: str) -> LauncherError:
    return LauncherError(code, f"{what} {path}: refusing {text[:60]!r}: {why}")


def split_line(data: bytes, path: str, what: str = "docker command",
               code: int = ExitCode.DOCKER_COMMAND_REJECTED) -> list:
    """The tokens of a one-line command file, split on single spaces exactly as Storm joins
    them. An empty file has no tokens."""
    text = one_line_text(data, path, what, code)
    if not text:
        return []
    tokens = text.split(" ")
    if not all(tokens):
        raise refusal(code, what, path, text, "empty token (tokens are separated by single spaces)")
    return tokens


MAX_PROFILE_ARGS = 64
# What a profiler argument may hold: Storm's are a pid, an action word and a directory path.
# No shell reads them (they become argv), but a profiler script may hand them to one, so
# nothing a shell would treat specially (quotes, $, `, ;, &, |, <, >, globs, ~, #, ...).
PROFILE_ARG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              "0123456789_./-+,=:@%")


def split_arguments(data: bytes, path: str, code: int = ExitCode.CANNOT_READ_FILE) -> list:
    """The profiler arguments of Storm's profile command file. Storm writes
    StringUtils.join([profileCmd, pid, action, dir], " ") with profileCmd = "" under its
    container managers, so the line starts with a space (` 42 jstack /dir`, ` 42 start`) and
    has no newline; the C launcher handed it to a shell, which split it on runs of blanks.
    So do we: runs of spaces separate arguments, one trailing newline is allowed, and an
    empty argument cannot be expressed (Storm's only one, its empty profileCmd, goes). A
    line with no argument at all, control characters, or shell metacharacters is refused."""
    text = one_line_text(data, path, "profiler command", code)

    def refuse(why):
        return refusal(code, "profiler command", path, text, why)

    arguments = [argument for argument in text.split(" ") if argument]
    if not arguments:
        raise refuse("no arguments (Storm writes ` <pid> <action> [<dir>]`)")
    if len(arguments) > MAX_PROFILE_ARGS:
        raise refuse(f"more than {MAX_PROFILE_ARGS} arguments")
    for argument in arguments:
        bad = sorted(set(argument) - PROFILE_ARG_CHARS)
        if bad:
            raise refuse(f"{bad[0]!r} in {argument[:60]!r} (no shell metacharacters)")
    return arguments


def worker_id_ok(name: str) -> bool:
    """Storm's worker id: a UUID, 8-4-4-4-12 lower-case hex digits."""
    parts = name.split("-")
    return ([len(p) for p in parts] == [8, 4, 4, 4, 12]
            and all(set(p) <= _HEX for p in parts))


def image_ok(image: str) -> bool:
    """Storm's image grammar ^(([a-zA-Z0-9.-]+)(:\\d+)?/)?([a-z0-9_./-]+)(:[\\w.-]+)?$, and
    not starting with '-' (it would read as an option)."""
    if not image or image[0] in "-.:/":
        return False
    candidates = [image]
    first, slash, after = image.partition("/")
    if slash:
        host, colon, port = first.partition(":")
        if host and set(host) <= _HOST_CHARS and (not colon or (port and set(port) <= _DIGITS)):
            candidates.append(after)
    return any(_repository_and_tag_ok(rest) for rest in candidates)


def _repository_and_tag_ok(rest: str) -> bool:
    repo, colon, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if colon and (not tag or not set(tag) <= _TAG_CHARS):
        return False
    return bool(repo) and set(repo) <= _REPO_CHARS
