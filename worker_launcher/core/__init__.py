"""The trusted core: exit codes and the one error type, worker-launcher.cfg, the policy
rules, the caller's and the target user's identities (every change of identity happens in
core.identity), and the audit log. Pure or nearly so; imports nothing else of the launcher."""
