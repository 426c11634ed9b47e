/* Run inside a build step (static, so it needs nothing of the image): tries
 * to make namespaces the ways a hostile step would, and prints one line per
 * try: "<what>: ok" or "<what>: <errno name>". */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *name(int e)
{
    switch (e) {
    case 0: return "ok";
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    default: return strerror(e);
    }
}

/* clone(2) with flags; the child exits at once. */
static int try_clone(unsigned long flags)
{
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid < 0)
        return errno;
    waitpid((pid_t)pid, NULL, 0);
    return 0;
}

static int try_clone3(uint64_t flags)
{
    struct clone_args a;
    memset(&a, 0, sizeof a);
    a.flags = flags;
    a.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &a, sizeof a);
    if (pid == 0)
        _exit(0);
    if (pid < 0)
        return errno;
    waitpid((pid_t)pid, NULL, 0);
    return 0;
}

static void *thread_main(void *arg) { return arg; }

int main(void)
{
    printf("fork: %s\n", name(try_clone(0)));
    printf("clone newuser: %s\n", name(try_clone(CLONE_NEWUSER)));
    printf("clone newnet: %s\n", name(try_clone(CLONE_NEWNET)));
    printf("clone newns: %s\n", name(try_clone(CLONE_NEWNS)));
    printf("clone newuser|newnet: %s\n", name(try_clone(CLONE_NEWUSER | CLONE_NEWNET)));
    printf("clone3: %s\n", name(try_clone3(0)));
    printf("clone3 newuser: %s\n", name(try_clone3(CLONE_NEWUSER)));
    pid_t p = fork(); /* libc's fork, as every shell uses */
    if (p == 0)
        _exit(0);
    printf("libc fork: %s\n", p > 0 ? "ok" : name(errno));
    if (p > 0)
        waitpid(p, NULL, 0);
    pthread_t th; /* libc's threads: clone3, then clone on ENOSYS */
    int e = pthread_create(&th, NULL, thread_main, NULL);
    printf("thread: %s\n", name(e));
    if (e == 0)
        pthread_join(th, NULL);
    return 0;
}
