"""json's own C parser and writer (_json), without the json package (~14 ms: it compiles
regular expressions and pulls in re and enum): `loads` for the files root writes (the
policy, runc's state), `dumps` for the config.json we write. What a caller hands us is read
by core.jsontext's strict reader instead. Apart from it, so that a call that only loads (a
reap, --check-config) does not load the reader (~20 KB of bytecode)."""

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


def loads(text: str):
    """json.loads(text) for a str: same result, same exceptions."""
    try:
        import _json

        scanner = _json.make_scanner(_ScannerContext())
        value, end = scanner(text, _skip_whitespace(text, 0))
        if _skip_whitespace(text, end) == len(text):
            return value
    except (ImportError, StopIteration, SystemError):
        # SystemError: _json raises its errors through json.decoder, which it does not import;
        # without it, a malformed escape ends in "returned NULL without setting an exception".
        pass
    import json  # the slow path: let json raise its own error (or parse without _json)

    return json.loads(text)


def _skip_whitespace(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


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
