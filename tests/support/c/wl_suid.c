/* Installed setuid root in the test images: writes the credentials it runs with (the
 * Uid, Gid, Cap* and NoNewPrivs lines of /proc/self/status) to argv[1]. Statically built
 * by tests/support/profiling.py. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2)
        return 2;
    char status[8192];
    int in = open("/proc/self/status", O_RDONLY);
    ssize_t size = in < 0 ? -1 : read(in, status, sizeof status - 1);
    if (size <= 0)
        return 1;
    status[size] = '\0';
    int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644);
    if (out < 0)
        return 1;
    for (char *line = strtok(status, "\n"); line; line = strtok(NULL, "\n"))
        if (!strncmp(line, "Uid:", 4) || !strncmp(line, "Gid:", 4) || !strncmp(line, "Cap", 3)
            || !strncmp(line, "NoNewPrivs:", 11))
            dprintf(out, "%s\n", line);
    close(out);
    return 0;
}
