"""--check-config: which keys of worker-launcher.cfg and of the policy are mistakes. Pure;
only --check-config imports it, and only for a key the launcher does not read (most configs
and policies have none), and difflib (with re, enum, collections: ~5 ms) only for a key that
comes close to one the launcher reads.

worker-launcher.cfg holds only launcher keys, so every key the launcher does not read is a
mistake. The policy may be a root-owned copy of storm.yaml, full of keys that are none of
the launcher's business: those pass silently, except a storm.oci.* key Storm does not know
either, a key of worker-launcher.cfg put in the policy, and a key so close to one the policy
reads that it is almost surely a typo of it (storm.local.dirs). None of Storm's own keys is
that close to one the policy reads (checked against every key Storm 2.x defines).
"""

from ..core import config, policy

CLOSE = 0.8  # difflib ratio from which an unknown key is taken for a typo

# storm.oci.* keys Storm reads that the launcher has no use for (DaemonConfig, storm-hdfs-oci).
STORM_OCI_KEYS = frozenset((
    "storm.oci.image",
    "storm.oci.image.hdfs.toplevel.dir",
    "storm.oci.image.tag.to.manifest.plugin",
    "storm.oci.layer.mounts.to.keep",
    "storm.oci.manifest.to.resources.plugin",
    "storm.oci.resources.local.dir",
    "storm.oci.resources.localizer",
    "storm.oci.local.or.hdfs.image.tag.to.manifest.plugin.hdfs.hash.file",
    "storm.oci.local.or.hdfs.image.tag.to.manifest.plugin.local.hash.file",
    "storm.oci.local.or.hdfs.image.tag.to.manifest.plugin.cache.refresh.interval.secs",
    "storm.oci.local.or.hdfs.image.tag.to.manifest.plugin.num.manifests.to.cache",
))
POLICY_KEYS = policy.PATH_KEYS + policy.LIST_KEYS
CONFIG_KEYS = tuple(config.DEFAULTS)


def _did_you_mean(key: str, known) -> str:
    near = [candidate for candidate in known if _quick_ratio(key, candidate) >= CLOSE]
    if not near:  # difflib's ratio is never above its quick_ratio: nothing would match
        return ""
    import difflib

    match = difflib.get_close_matches(key, near, n=1, cutoff=CLOSE)
    return f"; did you mean {match[0]}?" if match else ""


def _quick_ratio(a: str, b: str) -> float:
    """difflib.SequenceMatcher(None, a, b).quick_ratio(): 2 * (characters the two share,
    counted with multiplicity) / (len(a) + len(b)), an upper bound on ratio()."""
    counts = {}
    for char in b:
        counts[char] = counts.get(char, 0) + 1
    matches = 0
    for char in a:
        if counts.get(char, 0) > 0:
            counts[char] -= 1
            matches += 1
    return 2.0 * matches / (len(a) + len(b)) if a or b else 1.0


def config_key_problems(keys, path: str) -> list:
    """One line per key of worker-launcher.cfg the launcher does not read."""
    problems = []
    for key in keys:
        if key in POLICY_KEYS:
            problems.append(f"{key} in {path} is a policy key: the launcher reads it only from "
                            f"the policy file named by worker.launcher.policy")
        else:
            problems.append(f"unknown key {key} in {path} is ignored"
                            f"{_did_you_mean(key, CONFIG_KEYS)}")
    return problems


def policy_key_problems(keys, path: str) -> list:
    """One line per key of the policy that is a mistake (see the module's text)."""
    problems = []
    for key in keys:
        if key in CONFIG_KEYS:
            problems.append(f"{key} in {path} is a worker-launcher.cfg key: the policy "
                            f"ignores it")
        elif key.startswith("storm.oci.") and key not in STORM_OCI_KEYS:
            problems.append(f"unknown key {key} in {path}: neither the launcher nor Storm "
                            f"reads it{_did_you_mean(key, POLICY_KEYS + tuple(STORM_OCI_KEYS))}")
        elif key.startswith("worker.launcher."):
            problems.append(f"unknown key {key} in {path}"
                            f"{_did_you_mean(key, CONFIG_KEYS + POLICY_KEYS)}")
        elif not key.startswith("storm.oci."):
            hint = _did_you_mean(key, POLICY_KEYS)
            if hint:
                problems.append(f"unknown key {key} in {path} is ignored{hint}")
    return problems
