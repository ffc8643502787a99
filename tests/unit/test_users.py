import pytest

from worker_launcher.core.users import user_problem

BANNED = frozenset({"bin", "evil"})


def test_regular_user_is_accepted():
    assert user_problem("alice", 2001, 1000, BANNED) is None


@pytest.mark.parametrize("name, uid, fragment", [
    ("root", 0, "superuser"),
    ("toor", 0, "superuser"),
    ("ghost", None, "does not exist"),
    ("evil", 5000, "banned.users"),
    ("daemon", 1, "below min.user.id 1000"),
    ("../etc", 2001, "invalid user name"),
    ("-rf", 2001, "invalid user name"),
    ("a b", 2001, "invalid user name"),
    ("x" * 40, 2001, "invalid user name"),
    ("", 2001, "invalid user name"),
])
def test_refused_users(name, uid, fragment):
    assert fragment in user_problem(name, uid, 1000, BANNED)
