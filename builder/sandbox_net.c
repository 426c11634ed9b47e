/* The isolated network of a build step (the default).
 *
 * A network namespace of the step's own, made before the container and
 * bound at <bundle>/netns, which the container's spec joins; in it lo is up
 * and 169.254.0.0/16 (link-local: cloud metadata services) is unreachable.
 * slirp4netns (Debian's package, as rootless podman uses it) gives it
 * outbound NAT through the host's own sockets and DNS at 10.0.2.3, and with
 * --disable-host-loopback no way to the host's 127.0.0.1.  The step's root
 * has no CAP_NET_ADMIN (no route change) nor CAP_NET_RAW (no frames written
 * past the routing table) in this mode.  slirp4netns holds an exit fd of
 * ours: it ends when the step's builder does, whatever kills it; the bind
 * mount goes with the bundle (the reaper unmounts what is below it). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox_internal.h"
#include "sbx_common.h"

extern char **environ;

#define SLIRP_READY_MS 10000

/* In the forked child, new network namespace: lo up, link-local
 * unreachable.  Only system calls (the parent may have threads). */
static int child_configure(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return 10;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        return 11;
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        return 12;
    struct rtentry rt;
    memset(&rt, 0, sizeof rt);
    struct sockaddr_in *dst = (struct sockaddr_in *)&rt.rt_dst;
    struct sockaddr_in *mask = (struct sockaddr_in *)&rt.rt_genmask;
    dst->sin_family = mask->sin_family = AF_INET;
    dst->sin_addr.s_addr = htonl(0xA9FE0000u);  /* 169.254.0.0 */
    mask->sin_addr.s_addr = htonl(0xFFFF0000u); /* /16 */
    rt.rt_flags = RTF_UP | RTF_REJECT;
    if (ioctl(s, SIOCADDRT, &rt) < 0)
        return 13;
    close(s);
    return 0;
}

static int make_netns(const char *path, sbx_error *err)
{
    int fd = open(path, O_CREAT | O_EXCL | O_RDONLY | O_CLOEXEC, 0600);
    if (fd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "making the step's network namespace file");
    close(fd);
    pid_t pid = fork();
    if (pid < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "making the step's network namespace");
    if (pid == 0) {
        if (unshare(CLONE_NEWNET) < 0)
            _exit(2);
        int r = child_configure();
        if (r)
            _exit(r);
        if (mount("/proc/self/ns/net", path, NULL, MS_BIND, NULL) < 0)
            _exit(3);
        _exit(0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        unlink(path);
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        return sbx_error_set(err, SBX_EIO, "making the step's network namespace failed (%s)",
                             code == 2    ? "unshare(CLONE_NEWNET) refused"
                             : code == 3  ? "binding it to the bundle refused"
                             : code >= 10 ? "configuring lo and the link-local route refused"
                                          : "the helper died");
    }
    return 0;
}

int bld_netns_up(bld_netns *n, const char *bundle, const sbx_ctx *ctx, sbx_error *err)
{
    memset(n, 0, sizeof *n);
    n->slirp = -1;
    n->exit_fd = -1;
    n->path = sbx__strdup_printf("%s/netns", bundle);
    n->resolv = sbx__strdup_printf("%s/resolv.conf", bundle);
    if (!n->path || !n->resolv)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    /* slirp's DNS forwarder; the host's own search domains do not apply */
    int fd = open(n->resolv, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 || sbx__write_all(fd, "nameserver 10.0.2.3\n", 20, err) < 0) {
        if (fd >= 0)
            close(fd);
        return fd < 0 ? sbx_error_sys(err, SBX_EIO, errno, "writing the step's resolv.conf")
                      : err->code;
    }
    close(fd);
    if (make_netns(n->path, err) < 0)
        return err->code;
    n->mounted = true;

    int ready[2] = {-1, -1}, ex[2] = {-1, -1};
    if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(ex, O_CLOEXEC) < 0) {
        int e = errno;
        for (int i = 0; i < 2; i++) {
            if (ready[i] >= 0)
                close(ready[i]);
            if (ex[i] >= 0)
                close(ex[i]);
        }
        return sbx_error_sys(err, SBX_EIO, e, "starting slirp4netns");
    }
    /* the child gets the pipes' ends as fds 3 (ready) and 4 (exit) */
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, ready[1], 3);
    posix_spawn_file_actions_adddup2(&fa, ex[0], 4);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    char *argv[] = {"slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
                    "--netns-type=path", "--ready-fd=3", "--exit-fd=4", n->path, "tap0", NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "slirp4netns", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(ready[1]);
    close(ex[0]);
    if (rc != 0) {
        close(ready[0]);
        close(ex[1]);
        return sbx_error_sys(err, SBX_EUNSUPPORTED, rc, "the isolated network needs slirp4netns "
                             "(Debian package slirp4netns); or build with --network host");
    }
    n->slirp = pid;
    n->exit_fd = ex[1];
    struct pollfd p = {ready[0], POLLIN, 0};
    char c = 0;
    int pr;
    while ((pr = poll(&p, 1, SLIRP_READY_MS)) < 0 && errno == EINTR)
        ;
    bool ok = pr == 1 && read(ready[0], &c, 1) == 1 && c == '1';
    close(ready[0]);
    if (!ok)
        return sbx_error_set(err, SBX_EIO, "slirp4netns did not set up the step's network "
                             "within %d s", SLIRP_READY_MS / 1000);
    sbx__log(ctx, SBX_LOG_DEBUG, "isolated network: slirp4netns %d on %s", (int)pid, n->path);
    return 0;
}

void bld_netns_down(bld_netns *n, const sbx_ctx *ctx)
{
    if (!n->path)
        return; /* never brought up (a zeroed struct) */
    if (n->exit_fd >= 0)
        close(n->exit_fd); /* slirp4netns exits on it */
    n->exit_fd = -1;
    if (n->slirp > 0) {
        int st;
        pid_t r;
        for (int i = 0; i < 200 && (r = waitpid(n->slirp, &st, WNOHANG)) == 0; i++)
            usleep(10000);
        if (r == 0) {
            kill(n->slirp, SIGKILL);
            while (waitpid(n->slirp, &st, 0) < 0 && errno == EINTR)
                ;
        }
        n->slirp = -1;
    }
    if (n->mounted) {
        if (umount2(n->path, 0) < 0 && umount2(n->path, MNT_DETACH) < 0)
            sbx__log(ctx, SBX_LOG_WARN, "unmounting the step's network namespace '%s': %s",
                     n->path, strerror(errno));
        else
            n->mounted = false;
    }
    if (n->path && !n->mounted)
        unlink(n->path);
    free(n->path);
    free(n->resolv);
    n->path = n->resolv = NULL;
}
