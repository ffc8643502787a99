"""--check-config's typo hints: difflib is loaded only for a key that can come close, and the
hints are exactly difflib's."""

import difflib
import random
import subprocess
import sys

from worker_launcher.admin import keys

KNOWN = keys.POLICY_KEYS + keys.CONFIG_KEYS + tuple(keys.STORM_OCI_KEYS)
STORM_KEYS = ("storm.local.dir", "storm.local.dirs", "storm.log.dir", "storm.home",
              "storm.zookeeper.servers", "nimbus.seeds", "supervisor.slots.ports",
              "storm.workers.artifacts.dir", "storm.workers.artifact.dir", "worker.childopts",
              "storm.oci.cgroup.parnet", "worker.launcher.oci.runc", "topology.workers", "", "x")


def test_quick_ratio_is_difflibs():
    rng = random.Random(17)
    pairs = [(a, b) for a in STORM_KEYS for b in KNOWN]
    pairs += [("".join(rng.choice("abc.") for _ in range(rng.randrange(12))),
               "".join(rng.choice("abc.") for _ in range(rng.randrange(12)))) for _ in range(500)]
    for a, b in pairs:
        assert keys._quick_ratio(a, b) == difflib.SequenceMatcher(None, a, b).quick_ratio(), (a, b)


def test_hints_are_difflibs():
    for key in STORM_KEYS:
        for known in (keys.POLICY_KEYS, keys.CONFIG_KEYS, KNOWN):
            match = difflib.get_close_matches(key, list(known), n=1, cutoff=keys.CLOSE)
            assert keys._did_you_mean(key, known) == \
                (f"; did you mean {match[0]}?" if match else "")


def test_keys_far_from_every_known_one_do_not_load_difflib():
    code = ("import sys; from worker_launcher.admin import keys; "
            "keys.policy_key_problems(['nimbus.seeds', 'topology.workers', 'storm.zookeeper.servers'], 'p'); "
            "print('difflib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
