"""Pure parts of core.identity: the caller's limits the stub hands over."""

import pytest

from worker_launcher.core import identity


@pytest.mark.parametrize("text, limits", [
    ("7=1024,1=inf,3=8388608", ((7, 1024), (1, -1), (3, 8388608))),
    ("", ()), ("7=", ()), ("7=x", ()), ("=5", ()), ("7=-2", ()), ("-1=5", ()), ("7=1,,1=2", ()),
])
def test_parse_caller_limits(text, limits):
    assert identity.parse_caller_limits(text) == limits
