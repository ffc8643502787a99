"""Hypothesis settings for the parser fuzzers: bounded in CI, longer on request.

    WL_FUZZ_EXAMPLES=20000 tools/test tests/fuzz     # a longer run
"""

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("WL_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="WL_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow])
