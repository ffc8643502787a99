/* A worker process attacking the profiler: find the process one of whose arguments is
 * argv[1], attach to it with ptrace and make its next system call
 * execve("/bin/wl-suid", {"/bin/wl-suid", argv[2], NULL}, NULL): a setuid-root program
 * that reports the credentials it got. Prints "attached <pid>" or why not. x86-64 only;
 * built statically by tests/support/profiling.py for the container images of the tests. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t find(const char *needle) {
    pid_t best = 0;
    DIR *proc = opendir("/proc");
    struct dirent *entry;
    char path[64], args[4096];
    while (proc && (entry = readdir(proc)) != NULL) {
        pid_t pid = (pid_t)atoi(entry->d_name);
        if (pid <= 0 || pid == getpid())
            continue;
        snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t size = read(fd, args, sizeof args - 1);
        close(fd);
        if (size <= 0)
            continue;
        args[size] = '\0';
        for (ssize_t at = 0; at < size; at += (ssize_t)strlen(args + at) + 1)
            if (strcmp(args + at, needle) == 0 && (best == 0 || pid < best))
                best = pid;
    }
    if (proc)
        closedir(proc);
    return best;
}

static int poke(pid_t pid, unsigned long address, const void *data, size_t size) {
    for (size_t at = 0; at < size; at += sizeof(long)) {
        long word = 0;
        memcpy(&word, (const char *)data + at, size - at < sizeof word ? size - at : sizeof word);
        if (ptrace(PTRACE_POKEDATA, pid, (void *)(address + at), (void *)word) < 0)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: wl-tracer <argument> <report file>\n");
        return 2;
    }
    pid_t pid = 0;
    for (int tries = 0; tries < 200 && pid == 0; tries++) {
        pid = find(argv[1]);
        if (pid == 0)
            usleep(50000);
    }
    if (pid == 0) {
        printf("not found\n");
        return 1;
    }
    if (ptrace(PTRACE_ATTACH, pid, NULL, NULL) < 0) {
        printf("attach to %d failed: %s\n", pid, strerror(errno));
        return 1;
    }
    printf("attached %d\n", pid);
    fflush(stdout);
    int status;
    struct user_regs_struct regs;
    waitpid(pid, &status, __WALL);
    for (;;) { /* to the entry of its next system call (rax is -ENOSYS there) */
        if (ptrace(PTRACE_SYSCALL, pid, NULL, NULL) < 0 || waitpid(pid, &status, __WALL) < 0
            || !WIFSTOPPED(status)) {
            printf("lost %d\n", pid);
            return 1;
        }
        if (WSTOPSIG(status) == SIGTRAP && ptrace(PTRACE_GETREGS, pid, NULL, &regs) == 0
            && (long)regs.rax == -ENOSYS)
            break;
    }
    static const char program[] = "/bin/wl-suid";
    unsigned long base = regs.rsp & ~0xfUL; /* its stack: moot once execve succeeds */
    unsigned long program_at = base + 64, report_at = base + 128;
    unsigned long vector[3] = {program_at, report_at, 0};
    if (strlen(argv[2]) >= 200 || poke(pid, base, vector, sizeof vector) < 0
        || poke(pid, program_at, program, sizeof program) < 0
        || poke(pid, report_at, argv[2], strlen(argv[2]) + 1) < 0) {
        printf("cannot write to %d: %s\n", pid, strerror(errno));
        return 1;
    }
    regs.orig_rax = SYS_execve;
    regs.rdi = program_at;
    regs.rsi = base;
    regs.rdx = 0;
    if (ptrace(PTRACE_SETREGS, pid, NULL, &regs) < 0 || ptrace(PTRACE_DETACH, pid, NULL, NULL) < 0) {
        printf("cannot redirect %d: %s\n", pid, strerror(errno));
        return 1;
    }
    printf("redirected %d\n", pid);
    return 0;
}
