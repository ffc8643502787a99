"""fastjson gives json's results and json's errors without importing the json package."""

import json
import math

import pytest

from worker_launcher.core import jsontext as fastjson

DOCUMENTS = ['{"a": [1, 2.5, -3e2, true, false, null], "b": {"c": "\\u00e9\\n"}}', " [] ", "\t{}\n",
             '"text"', "0", '{"dup": 1, "dup": 2}', '[1, {"x": [[[]]]}]', '"snow \u2603 man"']


@pytest.mark.parametrize("text", DOCUMENTS)
def test_loads_matches_json(text):
    assert fastjson.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "   ", "[1,]", '{"a" 1}', "[1] [2]", "\ufeff{}", "{'a': 1}",
                                  '"\x01"', "[" * 5 + "]" * 4, "tru"])
def test_loads_raises_what_json_raises(text):
    with pytest.raises(ValueError) as ours:
        fastjson.loads(text)
    with pytest.raises(ValueError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)


def test_constants_as_json_reads_them():
    assert math.isnan(fastjson.loads("[NaN]")[0]) and fastjson.loads("Infinity") == math.inf


def test_dumps_round_trips_and_refuses_what_json_refuses():
    value = {"ociVersion": "1.0.0", "n": [1, -2, 3.5, True, None], "s": "é\n\"\\", "e": {}}
    assert json.loads(fastjson.dumps(value)) == value
    assert fastjson.dumps(value) == json.dumps(value, allow_nan=False)
    with pytest.raises(ValueError):
        fastjson.dumps([math.nan])
    with pytest.raises(TypeError):
        fastjson.dumps({"x": object()})
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError):
        fastjson.dumps(loop)
