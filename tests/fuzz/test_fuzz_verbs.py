"""The classic verbs' pure parsers and rules, and the foundation's message and limit
helpers, under hypothesis: never an exception, and each keeps its promise."""

import ctypes
import os
import stat

from hypothesis import given, strategies as st

from support.fuzz import FUZZ
from worker_launcher.core import identity as privileges, policy
from worker_launcher.core.errors import MAX_MESSAGE_CHARS, one_line
from worker_launcher.classic import signals
from worker_launcher.paths import resolve as pathwalk
from worker_launcher.privileged import ownership

LIBC = ctypes.CDLL(None)
LIBC.strtol.restype = ctypes.c_long
LIBC.strtol.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]
NUMBERISH = st.text(alphabet=" \t\n\v\f\r+-0123456789xXeE._a\u0661\u00a0", max_size=14)


def c_strtol(text: str):
    """(value, accepted) as Storm checks an argument: strtol with digits and *end == 0."""
    data = text.encode()
    buffer = ctypes.create_string_buffer(data)
    end = ctypes.c_char_p()
    value = LIBC.strtol(buffer, ctypes.byref(end), 10)
    consumed = ctypes.cast(end, ctypes.c_void_p).value - ctypes.addressof(buffer)
    return value, consumed > 0 and consumed == len(data) and any(c.isdigit() for c in text)


@FUZZ
@given(NUMBERISH | st.text(max_size=10))
def test_parse_c_long_agrees_with_strtol(text):
    parsed = signals.parse_c_long(text)
    value, accepted = c_strtol(text)
    assert (parsed is not None) == accepted, text
    if parsed is not None and -2**63 <= parsed < 2**63:
        assert parsed == value


PARTS = st.lists(st.sampled_from(["", ".", "..", "a", "b", "storm", "/", "x/..", "../.."]),
                 max_size=6)


COMPONENTS = st.lists(st.sampled_from([".", "..", "a", "b", "storm", "\n", "x y"]), max_size=6)


@FUZZ
@given(st.lists(st.sampled_from(["a", "b", "storm"]), max_size=4).map("/".join),
       st.text(alphabet=st.characters(blacklist_characters="\0"), max_size=20)
       | PARTS.map("/".join), COMPONENTS)
def test_follow_link_stays_a_normal_absolute_path(prefix, target, rest):
    """As _walk calls it: `prefix` a normal path (without symlinks), `rest` components, and
    `target` what readlink returns (never a NUL)."""
    result = pathwalk.follow_link("/" + prefix, target, rest)
    assert result.startswith("/") and policy.normalize(result) == result or result == "/"


@FUZZ
@given(st.integers(min_value=0, max_value=0o177777), st.booleans(), st.booleans())
def test_storm_mode_never_grants_others_or_setuid(mode, writable, setgid_dirs):
    new = ownership.storm_mode(mode, writable, setgid_dirs)
    assert not new & (stat.S_IRWXO | stat.S_ISUID | stat.S_ISVTX)
    assert new & stat.S_ISGID == 0 or (stat.S_ISDIR(mode) and setgid_dirs)
    assert new & 0o060 == 0o060 and bool(new & stat.S_IWUSR) == writable or \
        (not writable and not new & stat.S_IWUSR)


@FUZZ
@given(st.text(max_size=3000))
def test_one_line_is_one_bounded_line(message):
    line = one_line(message)
    assert not any(char in line for char in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x1b")
    assert len(line) <= MAX_MESSAGE_CHARS + 40
    if message.isprintable() and len(message) <= MAX_MESSAGE_CHARS:
        assert line == message


LIMIT_ITEMS = st.tuples(st.integers(-3, 20), st.integers(-3, 2**64) | st.just("inf")).map(
    lambda pair: f"{pair[0]}={pair[1]}")


@FUZZ
@given(st.lists(LIMIT_ITEMS, max_size=8).map(",".join) | st.text(max_size=40))
def test_parse_caller_limits_never_raises(text):
    limits = privileges.parse_caller_limits(text)
    for number, soft in limits:
        assert number >= 0 and soft >= -1


@FUZZ
@given(st.text(max_size=40) | PARTS.map("/".join))
def test_normalize_is_idempotent_and_never_keeps_dots(path):
    normal = policy.normalize(path)
    if normal is not None:
        assert policy.normalize(normal) == normal
        assert ".." not in normal.split("/") and "." not in normal.split("/")
        assert os.path.isabs(normal) and "\0" not in normal
