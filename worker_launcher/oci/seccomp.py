"""The `linux.seccomp` object of a request: the OCI runtime-spec schema (config-linux.md,
"Seccomp"), every field with its exact type, checked purely.

Storm embeds the operator's profile file verbatim (`@JsonRawValue`), so whatever the runtime
spec allows may arrive; what runc would silently ignore (Docker's `archMap`, `includes`,
`comment`, ...) is refused instead, so the filter runc installs is the one that was read.
"""

from .spec_rules import integer, one_of, refuse, the_list, with_fields

ACTIONS = frozenset({"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                     "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
                     "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"})
# A default action that lets every system call through makes the filter a no-op (LOG
# allows too, it only logs). NOTIFY hands each call to a listener, which needs listenerPath.
REFUSED_DEFAULTS = frozenset({"SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"})
ERRNO_ACTIONS = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})  # the ones taking errnoRet
ARCHITECTURES = frozenset({
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64"})
FLAGS = frozenset({"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                   "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"})
OPERATORS = frozenset({"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
                       "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"})
MAX_ERRNO = 4095  # the kernel's errno range; SECCOMP_RET_ERRNO carries 16 bits of it
MAX_RULES = 4096
MAX_NAMES = 1024
U64 = 2**64 - 1
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def check(value, where: str) -> None:
    """Refuse (exit 24, naming the field) anything that is not a seccomp object runc would
    install exactly as written, or that would not filter at all."""
    # listenerPath/listenerMetadata are refused: with them runc, as root, connects to a
    # host socket the request names and hands whoever listens there the container's seccomp
    # notification fd, i.e. the power to answer the worker's system calls. Storm has no
    # use for it and the launcher no way to tell whose socket it is.
    seccomp = with_fields(value, where, ("defaultAction",),
                          ("defaultErrnoRet", "architectures", "flags", "syscalls"),
                          refused={"listenerPath": "a seccomp agent socket is not allowed",
                                   "listenerMetadata": "a seccomp agent is not allowed"})
    default = seccomp["defaultAction"]
    if not one_of(default, ACTIONS):
        raise refuse(f"{where}.defaultAction", "is not a seccomp action")
    if default in REFUSED_DEFAULTS:
        raise refuse(f"{where}.defaultAction", f"{default} would let every system call through "
                                               f"(or need a seccomp agent)")
    if "defaultErrnoRet" in seccomp:
        _errno(seccomp["defaultErrnoRet"], default, f"{where}.defaultErrnoRet")
    for key, allowed, what in (("architectures", ARCHITECTURES, "an SCMP_ARCH_ name"),
                               ("flags", FLAGS, "a SECCOMP_FILTER_FLAG_ name")):
        items = the_list(seccomp.get(key, []), f"{where}.{key}", 32)
        for index, item in enumerate(items):
            if not one_of(item, allowed):
                raise refuse(f"{where}.{key}[{index}]", f"is not {what} runc knows")
        if len(set(items)) != len(items):
            raise refuse(f"{where}.{key}", "names an entry twice")
    for index, rule in enumerate(the_list(seccomp.get("syscalls", []), f"{where}.syscalls",
                                          MAX_RULES)):
        _rule(rule, f"{where}.syscalls[{index}]")


def _errno(value, action: str, where: str) -> None:
    if action not in ERRNO_ACTIONS:
        raise refuse(where, f"is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {action}")
    integer(value, where, 0, MAX_ERRNO)


def _rule(value, where: str) -> None:
    rule = with_fields(value, where, ("names", "action"), ("errnoRet", "args"))
    for index, name in enumerate(the_list(rule["names"], f"{where}.names", MAX_NAMES,
                                          allow_empty=False)):
        if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS:
            raise refuse(f"{where}.names[{index}]", "must be a system call name")
    action = rule["action"]
    if not one_of(action, ACTIONS):
        raise refuse(f"{where}.action", "is not a seccomp action")
    if action == "SCMP_ACT_NOTIFY":
        raise refuse(f"{where}.action", "SCMP_ACT_NOTIFY needs a seccomp agent, which is not "
                                        "allowed")
    if "errnoRet" in rule:
        _errno(rule["errnoRet"], action, f"{where}.errnoRet")
    for index, arg in enumerate(the_list(rule.get("args", []), f"{where}.args", 6)):
        here = f"{where}.args[{index}]"
        arg = with_fields(arg, here, ("index", "value", "op"), ("valueTwo",))
        integer(arg["index"], f"{here}.index", 0, 5)
        integer(arg["value"], f"{here}.value", 0, U64)
        if "valueTwo" in arg:
            integer(arg["valueTwo"], f"{here}.valueTwo", 0, U64)
        if not one_of(arg["op"], OPERATORS):
            raise refuse(f"{here}.op", "is not a seccomp comparison")
