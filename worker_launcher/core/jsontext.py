"""JSON without importing the json package: the strict reader of everything a caller hands
us (core.fastjson has json's own C parser, for root's files, and a compact writer).

`import json` costs ~14 ms per invocation (its modules compile regular expressions at import
time, and pull in re and enum). `parse` is the reader of everything a caller hands us
(oci-config.json, the seccomp profile it must match): an iterative parser (no recursion, so
no nesting depth can exhaust the stack) that uses the C string decoder of `_json` for the
bulk of the text and accepts exactly RFC 8259 JSON, minus what Storm never writes and a
reader should not guess at: NaN and Infinity, numbers that do not fit a double or 64 digits,
duplicate keys, strings holding lone UTF-16 surrogates (a `\\ud800` escape), and nesting
deeper than the caller allows. Anything else becomes one JsonError naming the position.
"""

_WHITESPACE = " \t\n\r"
_DIGITS = "0123456789"
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
            "t": "\t"}
_HEX = frozenset("0123456789abcdefABCDEF")
MAX_NUMBER_CHARS = 64
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class JsonError(ValueError):
    """Why a document is not accepted, and where: `pos` (a character offset, or a byte offset
    when `unit` is "byte"), `lineno` and `colno` (1-based)."""

    def __init__(self, msg: str, text, pos: int, unit: str = "character"):
        newline = "\n" if isinstance(text, str) else b"\n"
        self.msg, self.pos, self.unit = msg, pos, unit
        self.lineno = text.count(newline, 0, pos) + 1
        self.colno = pos - (text.rfind(newline, 0, pos) + 1) + 1
        super().__init__(f"{msg} at line {self.lineno} column {self.colno} ({unit} {pos})")


MAX_VALUES = 1 << 16


def parse(data, max_depth: int = 64, max_values: int = MAX_VALUES):
    """The JSON value of `data` (UTF-8 bytes or str); JsonError for anything else. At most
    `max_depth` nested containers and `max_values` values in all (a bound on the work a
    hostile document can cause)."""
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as err:
            raise JsonError("invalid UTF-8", bytes(data), err.start, "byte") from None
    else:
        text = data
    return _Reader(text, max_depth, max_values).document()


class _Reader:
    __slots__ = ("text", "max_depth", "max_values", "scan")

    def __init__(self, text: str, max_depth: int, max_values: int = MAX_VALUES):
        self.text, self.max_depth, self.max_values = text, max_depth, max_values
        try:
            from _json import scanstring
        except ImportError:  # not CPython: the Python decoder below does it all
            scanstring = None
        self.scan = scanstring

    def fail(self, msg: str, pos: int) -> JsonError:
        return JsonError(msg, self.text, pos)

    def skip(self, index: int) -> int:
        text = self.text
        while index < len(text) and text[index] in _WHITESPACE:
            index += 1
        return index

    def document(self):
        text = self.text
        index = self.skip(0)
        if index == len(text):
            raise self.fail("no JSON value in an empty document", index)
        value, index = self.value(index)
        index = self.skip(index)
        if index != len(text):
            raise self.fail("extra data after the JSON value", index)
        return value

    def value(self, index: int):
        """The value at `index` (no whitespace before it) and the index after it. Containers
        are parsed with an explicit stack of (container, key) pairs, never by recursion."""
        text, stack, budget = self.text, [], self.max_values
        while True:
            budget -= 1
            if budget < 0:
                raise self.fail(f"more than {self.max_values} values", index)
            char = text[index] if index < len(text) else ""
            if char in ("{", "["):
                if len(stack) >= self.max_depth:
                    raise self.fail(f"nesting deeper than {self.max_depth} levels", index)
                index = self.skip(index + 1)
                if char == "{":
                    if text.startswith("}", index):
                        value, index = {}, index + 1
                    else:
                        container = {}
                        key, index = self.key(index, container)
                        stack.append((container, key))
                        continue
                elif text.startswith("]", index):
                    value, index = [], index + 1
                else:
                    stack.append(([], None))
                    continue
            else:
                value, index = self.scalar(index, char)
            while True:  # attach the value to its container; close finished containers
                if not stack:
                    return value, index
                container, key = stack[-1]
                if key is None:
                    container.append(value)
                else:
                    container[key] = value
                index = self.skip(index)
                char = text[index] if index < len(text) else ""
                closer = "]" if key is None else "}"
                if char == ",":
                    index = self.skip(index + 1)
                    if key is not None:
                        key, index = self.key(index, container)
                        stack[-1] = (container, key)
                    break
                if char != closer:
                    raise self.fail(f"expected ',' or '{closer}'", index)
                stack.pop()
                value, index = container, index + 1

    def key(self, index: int, container: dict):
        """A member's key, checked against the keys before it, and the index of its value."""
        if not self.text.startswith('"', index):
            raise self.fail("expected a key in double quotes", index)
        key, after = self.string(index)
        if key in container:
            raise self.fail(f"duplicate key {key!r}", index)
        after = self.skip(after)
        if not self.text.startswith(":", after):
            raise self.fail("expected ':' after a key", after)
        return key, self.skip(after + 1)

    def scalar(self, index: int, char: str):
        text = self.text
        if char == '"':
            return self.string(index)
        if char and char in "-" + _DIGITS:
            return self.number(index)
        for word, value in (("true", True), ("false", False), ("null", None)):
            if text.startswith(word, index):
                return value, index + len(word)
        if any(text.startswith(word, index) for word in _CONSTANTS):
            raise self.fail("NaN and Infinity are not JSON numbers", index)
        if not char:
            raise self.fail("expected a value, found the end of the document", index)
        raise self.fail("expected a value", index)

    def number(self, start: int):
        text, index = self.text, start
        limit = min(len(text), start + MAX_NUMBER_CHARS + 1)

        def digits(at: int) -> int:
            while at < limit and text[at] in _DIGITS:
                at += 1
            return at

        if text.startswith("-", index):
            index += 1
            if text.startswith("Infinity", index):
                raise self.fail("NaN and Infinity are not JSON numbers", start)
        if text.startswith("0", index):
            index += 1
        elif index < limit and text[index] in _DIGITS:
            index = digits(index)
        else:
            raise self.fail("invalid number", start)
        integral = True
        if text.startswith(".", index):
            after = digits(index + 1)
            if after == index + 1:
                raise self.fail("invalid number: no digit after '.'", start)
            index, integral = after, False
        if index < len(text) and text[index] in "eE":
            index += 1
            if index < len(text) and text[index] in "+-":
                index += 1
            after = digits(index)
            if after == index:
                raise self.fail("invalid number: no digit in the exponent", start)
            index, integral = after, False
        if index - start > MAX_NUMBER_CHARS:
            raise self.fail(f"number longer than {MAX_NUMBER_CHARS} characters", start)
        token = text[start:index]
        if integral:
            return int(token), index
        value = float(token)
        if value in (float("inf"), float("-inf")):
            raise self.fail("number out of the range of a double", start)
        return value, index

    def string(self, start: int):
        """The decoded string whose opening quote is at `start`, and the index after it."""
        value = None
        if self.scan is not None:
            try:
                value, end = self.scan(self.text, start + 1, True)
            except (ValueError, SystemError):  # (SystemError: _json reports through json.decoder,
                pass  # which is not imported; find the problem ourselves, below)
        if value is None:
            value, end = self.decode_string(start)
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise self.fail("string holds a lone UTF-16 surrogate (\\ud800-\\udfff)",
                                start) from None
        return value, end

    def decode_string(self, start: int):
        """A string decoded in Python, with the position of its first problem."""
        text, index, out = self.text, start + 1, []
        while True:
            if index >= len(text):
                raise self.fail("unterminated string", start)
            char = text[index]
            if char == '"':
                return "".join(out), index + 1
            if char < " ":
                raise self.fail("control character in a string (escape it)", index)
            if char != "\\":
                out.append(char)
                index += 1
                continue
            escape = text[index + 1:index + 2]
            if escape in _ESCAPES:
                out.append(_ESCAPES[escape])
                index += 2
            elif escape == "u" and _is_hex4(text, index + 2):
                code = int(text[index + 2:index + 6], 16)
                index += 6
                if 0xD800 <= code < 0xDC00 and text.startswith("\\u", index) \
                        and _is_hex4(text, index + 2) \
                        and 0xDC00 <= int(text[index + 2:index + 6], 16) < 0xE000:
                    low = int(text[index + 2:index + 6], 16)  # a surrogate pair: one character
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    index += 6
                out.append(chr(code))
            else:
                raise self.fail("invalid escape in a string", index)


def _is_hex4(text: str, index: int) -> bool:
    digits = text[index:index + 4]
    return len(digits) == 4 and set(digits) <= _HEX
