"""JSON through CPython's C accelerator `_json`, without importing the json package.

`import json` costs ~14 ms per invocation (its modules compile regular expressions at import
time, and pull in re and enum); runc-run pays it on its critical path (oci-config.json, the
policy, config.json). The C scanner and encoder are what json itself uses; this module only
skips the pure-Python wrapper. Anything unusual (an error to report, no _json) goes to the
json package, so messages and behaviour are json's own.
"""

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _ScannerContext:
    """The attributes _json.make_scanner reads (json.decoder.JSONDecoder's defaults)."""

    __slots__ = ("strict", "object_hook", "object_pairs_hook", "parse_float", "parse_int",
                 "parse_constant", "memo")

    def __init__(self):
        self.strict, self.object_hook, self.object_pairs_hook = True, None, None
        self.parse_float, self.parse_int = float, int
        self.parse_constant, self.memo = _CONSTANTS.__getitem__, {}


def _skip_whitespace(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


def loads(text: str):
    """json.loads(text) for a str: same result, same exceptions."""
    try:
        import _json

        scanner = _json.make_scanner(_ScannerContext())
        value, end = scanner(text, _skip_whitespace(text, 0))
        if _skip_whitespace(text, end) == len(text):
            return value
    except (ImportError, StopIteration):
        pass
    import json  # the slow path: let json raise its own error (or parse without _json)

    return json.loads(text)


def _not_serializable(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value) -> str:
    """json.dumps(value, separators=(", ", ": "), allow_nan=False): one line."""
    try:
        import _json
    except ImportError:
        import json

        return json.dumps(value, allow_nan=False)
    encoder = _json.make_encoder({}, _not_serializable, _json.encode_basestring_ascii, None,
                                 ": ", ", ", False, False, False)
    return "".join(encoder(value, 0))
