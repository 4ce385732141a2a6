#define _GNU_SOURCE
#include "native.h"
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>

int mr_unshare(int flags) { return unshare(flags); }

int mr_setns(int fd, int nstype) { return setns(fd, nstype); }

int mr_mount(const char *source, const char *target, const char *fstype,
             unsigned long flags, const char *data)
{
    return mount(source, target, fstype, flags, data);
}

int mr_umount2(const char *target, int flags) { return umount2(target, flags); }

int mr_pivot_root(const char *new_root, const char *put_old)
{
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

int mr_sethostname(const char *name, size_t len) { return sethostname(name, len); }

int mr_setdomainname(const char *name, size_t len) { return setdomainname(name, len); }

int mr_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve)
{
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = flags;
    how.mode = mode;
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

int mr_close_range(unsigned int first, unsigned int last, unsigned int flags)
{
    return (int)syscall(SYS_close_range, first, last, flags);
}

int mr_pidfd_open(int pid, unsigned int flags)
{
    return (int)syscall(SYS_pidfd_open, pid, flags);
}

int mr_pidfd_send_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int mr_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)
{
    return prctl(option, a2, a3, a4, a5);
}

/* Set IFF_UP on an interface of the current network namespace (SIOCSIFFLAGS).
 * A fresh network namespace has `lo` down; runc brings it up, so do we. */
int mr_link_up(const char *ifname)
{
    struct ifreq ifr;
    int fd, rc, saved;

    if (strlen(ifname) >= IFNAMSIZ) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&ifr, 0, sizeof(ifr));
    strcpy(ifr.ifr_name, ifname);
    rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
    if (rc == 0 && !(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* mount_setattr(2): change a mount's (or, with AT_RECURSIVE, a whole tree's)
 * attributes; used for the recursive mount options such as `rro`. */
int mr_mount_setattr(int dirfd, const char *path, unsigned int flags,
                     uint64_t attr_set, uint64_t attr_clr, uint64_t propagation)
{
    struct mount_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.attr_set = attr_set;
    attr.attr_clr = attr_clr;
    attr.propagation = propagation;
    return (int)syscall(SYS_mount_setattr, dirfd, path, flags, &attr, sizeof(attr));
}

/* keyctl(KEYCTL_JOIN_SESSION_KEYRING): give the container a session keyring of its
 * own instead of sharing the caller's (runc does this unless --no-new-keyring). */
int mr_join_session_keyring(const char *name)
{
    return (int)syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, name, 0, 0, 0);
}
