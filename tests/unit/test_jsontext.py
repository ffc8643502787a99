"""fastjson gives json's results and json's errors without importing the json package."""

import json
import math

import pytest

from worker_launcher.core import fastjson

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


def test_a_malformed_escape_is_json_s_error_not_a_system_error():
    """_json reports errors through json.decoder; in a launcher that never imported it, a bad
    escape used to end in "SystemError: <_json.Scanner object> returned NULL without setting
    an exception" (exit 20). Checked in a fresh interpreter: pytest itself imports json."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys\nsys.path.insert(0, sys.argv[1])\n"
            "from worker_launcher.core import fastjson\n"
            "assert 'json.decoder' not in sys.modules\n"
            "for text in ('\"\\\\x\"', '{\"a\": \"\\\\u12\"}', '[\"\\\\ud8\"]'):\n"
            "    try:\n        fastjson.loads(text)\n    except Exception as err:\n"
            "        print(type(err).__name__)\n")
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, root], capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["JSONDecodeError"] * 3
