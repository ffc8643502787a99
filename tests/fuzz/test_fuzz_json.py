"""The strict JSON reader the launcher uses for every request (core.jsontext.parse) under
hypothesis: any input gives a value or one JsonError naming a position inside the input,
never another exception (the C scanner's SystemError, RecursionError, ValueError from int());
whatever it accepts, json.loads reads the same; what json writes, it reads."""

import json
import math

from hypothesis import given, strategies as st

from support.fuzz import FUZZ
from worker_launcher.core import jsontext

ANY_CHARACTER = st.characters(blacklist_categories=())  # surrogates included
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(ANY_CHARACTER.filter(
        lambda c: not 0xD800 <= ord(c) <= 0xDFFF), max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20)
FORMATS = st.sampled_from([dict(), dict(separators=(",", ":")), dict(indent=2),
                           dict(ensure_ascii=False), dict(indent="\t", ensure_ascii=False)])
TOKENS = st.sampled_from(['{', '}', '[', ']', ',', ':', '"', '\\', '\\u', '\\ud800', '\\udc00',
                          'NaN', '-Infinity', 'true', 'nul', '1e999', '-', '0', '01', '.5',
                          '1' * 70, ' ', '\n', '\x00', '\x1f', '"a"', '"a":', '\ufeff'])


def _check(data):
    try:
        value = jsontext.parse(data, max_depth=8)
    except jsontext.JsonError as err:
        assert 0 <= err.pos <= len(data) and err.lineno >= 1 and err.colno >= 1
        assert "\n" not in str(err)
        return
    assert json.loads(data) == value  # accepted: json reads it the same


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes(data):
    _check(data)


@FUZZ
@given(st.text(ANY_CHARACTER, max_size=200) | st.lists(TOKENS, max_size=40).map("".join))
def test_any_text_and_json_fragments(text):
    _check(text)


@FUZZ
@given(JSON_VALUES, FORMATS)
def test_what_json_writes_is_read_back(value, options):
    text = json.dumps(value, **options)
    try:
        parsed = jsontext.parse(text, max_depth=64)
    except jsontext.JsonError as err:
        assert "longer than" in err.msg  # only a huge integer (70 digits allowed here) or float
        return
    assert parsed == value or (isinstance(value, float) and math.isclose(parsed, value))


@FUZZ
@given(JSON_VALUES, st.lists(st.tuples(st.integers(0, 10**6), TOKENS | st.sampled_from(["", "x"]),
                                       st.integers(0, 3)), max_size=4))
def test_mutated_documents(value, edits):
    text = json.dumps(value)
    for position, token, removed in edits:
        position %= len(text) + 1
        text = text[:position] + token + text[position + removed:]
    _check(text)
    _check(text.encode("utf-8", "surrogatepass"))


def test_deep_nesting_is_refused_at_its_position_without_recursion():
    for opener in "[{":
        text = (opener + ('"k":' if opener == "{" else "")) * 200000
        try:
            jsontext.parse(text, max_depth=16)
        except jsontext.JsonError as err:
            assert "nesting deeper than 16" in err.msg and err.pos < 200
        else:
            raise AssertionError("accepted")
