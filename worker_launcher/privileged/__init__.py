"""The privileged layer: the closed list of operations that need root (mounts, loop
devices, ownership changes of a user's tree, starting a root child). Nothing outside this
package calls those system calls; tests/unit/test_layout.py enforces it."""
