/* minirun's syscall layer: thin C wrappers around the kernel calls that the
 * Python standard library does not expose (namespaces, mounts, pivot_root,
 * openat2, pidfds, close_range, capabilities' ambient set, loopback).
 * Every function returns -1 and leaves errno set on failure, as the kernel does;
 * minirun/syscalls.py turns that into a SyscallError naming call, errno and path. */
#ifndef MINIRUN_NATIVE_H
#define MINIRUN_NATIVE_H
#include <stdint.h>
#include <stddef.h>

int mr_unshare(int flags);
int mr_setns(int fd, int nstype);
int mr_mount(const char *source, const char *target, const char *fstype,
             unsigned long flags, const char *data);
int mr_umount2(const char *target, int flags);
int mr_pivot_root(const char *new_root, const char *put_old);
int mr_sethostname(const char *name, size_t len);
int mr_setdomainname(const char *name, size_t len);
int mr_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);
int mr_close_range(unsigned int first, unsigned int last, unsigned int flags);
int mr_pidfd_open(int pid, unsigned int flags);
int mr_pidfd_send_signal(int pidfd, int sig);
int mr_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);
int mr_link_up(const char *ifname);
int mr_mount_setattr(int dirfd, const char *path, unsigned int flags,
                     uint64_t attr_set, uint64_t attr_clr, uint64_t propagation);
int mr_join_session_keyring(const char *name);
#endif
