/* Makes the system calls named on the command line with harmless arguments and prints NAME=OK or NAME=ERRNAME:
 * a seccomp filter answers before the kernel looks at the arguments, so a refused call shows the filter's errno. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static long call(const char *name) {
    if (!strcmp(name, "add_key")) return syscall(SYS_add_key, NULL, NULL, NULL, 0, 0);
    if (!strcmp(name, "keyctl")) return syscall(SYS_keyctl, 9999, 0, 0, 0, 0);
    if (!strcmp(name, "request_key")) return syscall(SYS_request_key, NULL, NULL, NULL, 0);
    if (!strcmp(name, "perf_event_open")) return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
    if (!strcmp(name, "io_uring_setup")) return syscall(SYS_io_uring_setup, 0, NULL);
    if (!strcmp(name, "setns")) return setns(-1, 0);
    if (!strcmp(name, "unshare_user")) return unshare(CLONE_NEWUSER);
    if (!strcmp(name, "clone3")) return syscall(SYS_clone3, NULL, 0);
    if (!strcmp(name, "socket_alg")) return socket(AF_ALG, SOCK_SEQPACKET, 0);
    if (!strcmp(name, "socket_unix")) return socket(AF_UNIX, SOCK_STREAM, 0);
    if (!strcmp(name, "personality_query")) return personality(0xffffffff);
    if (!strcmp(name, "personality_read_implies_exec")) return personality(READ_IMPLIES_EXEC);
    errno = ENOENT;
    return -2;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        errno = 0;
        long r = call(argv[i]);
        if (r == -2) {
            fprintf(stderr, "unknown probe %s\n", argv[i]);
            return 2;
        }
        printf("%s=%s\n", argv[i], r == -1 ? strerrorname_np(errno) : "OK");
    }
    return 0;
}
