"""The privileged layer: the closed list of operations that need root. Nothing outside this
package mounts, unmounts, attaches a loop device, changes a user's files' owner, forks or
starts a program as root, or imports the native shim; tests/unit/test_layout.py enforces it.
Each operation says, where it is defined, why it is safe (its "Safe:" paragraph).

- mounts.mount_layer(layer_fd, ...)       a layer file, opened by descriptor, on a read-only
                                          autoclear loop device, mounted ro,nosuid,nodev
- mounts.mount_overlay(lowers, ...)       a container's root over its layers, nosuid,nodev
- mounts.container_tmpfs(directory)       a small root-only tmpfs (nosuid,nodev,noexec) on a
                                          container's new run directory (config.json, the
                                          overlay's upper and work, the binds' mount points)
- mounts.unmount(target)                  UMOUNT_NOFOLLOW, bounded retries
- mounts.detach(directory)                a container's tmpfs and the binds on it, lazily
- mounts.backing_matches(device, fd)      which file a mounted layer's loop device shows
- binds.bind_fd(fd, target)               the object behind a descriptor bound onto a new
                                          entry of a root-only directory
- binds.restrict(target, read_only)       nosuid, nodev (and ro) on a staged bind and every
                                          mount below it (mount_setattr, Linux 5.12+)
- binds.detached_tree(), attach_detached  docker's pinned sources in a tmpfs mounted nowhere
- binds.release(directory)                detach and remove staged binds, never recursively
- ownership.fix_tree(top_fd, rule, ...)   Storm's owner and mode rule on a user's tree, by
                                          descriptor, entries of others left alone
- spawn.run / spawn.output                the one way a root child (runc, docker) starts:
                                          argv only, our environment, its own session
- spawn.guard(cleanup)                    a process that undoes what a killed launcher left

`kernel` is the wrapper over the native shims (`_sys`, cffi; `_umount`, umount2 alone, so a
reap loads no cffi): every call raises OSError naming the operation and its arguments.
"""
