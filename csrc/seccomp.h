/* minirun's libseccomp binding: thin wrappers, one per libseccomp call that
 * minirun/linux/seccomp.py needs; the Python side does all the logic.
 *
 * Same convention as native.h: a wrapper returns -1 (or NULL) and leaves errno
 * set on failure. libseccomp itself returns -errno; the wrappers turn that into
 * errno so that minirun/syscalls.py's way of reporting applies unchanged.
 *
 * This file is named like libseccomp's own header, and csrc/ is on the include
 * path: `#include_next` reaches the real <seccomp.h> that follows csrc/ in the
 * search path (csrc/seccomp.c therefore includes this file as <seccomp.h>). */
#ifndef MINIRUN_SECCOMP_H
#define MINIRUN_SECCOMP_H
#include_next <seccomp.h>
#include <stdint.h>

/* Filter attributes this libseccomp may lack: -1 when it does. */
#if SCMP_VER_MAJOR > 2 || (SCMP_VER_MAJOR == 2 && SCMP_VER_MINOR >= 6)
#define MR_SCMP_FLTATR_CTL_WAITKILL SCMP_FLTATR_CTL_WAITKILL
#else
#define MR_SCMP_FLTATR_CTL_WAITKILL (-1)
#endif

void *mr_seccomp_init(uint32_t def_action);
void mr_seccomp_release(void *ctx);
int mr_seccomp_arch_add(void *ctx, uint32_t arch_token);
int mr_seccomp_attr_set(void *ctx, int attr, uint32_t value);
int mr_seccomp_attr_get(void *ctx, int attr, uint32_t *value);
int mr_seccomp_rule_add(void *ctx, uint32_t action, int syscall, unsigned int count,
                        const unsigned int *index, const int *op,
                        const uint64_t *datum_a, const uint64_t *datum_b);
int mr_seccomp_load(void *ctx);
int mr_seccomp_notify_fd(void *ctx);
int mr_seccomp_syscall_resolve_name(const char *name);
int mr_seccomp_syscall_resolve_name_arch(uint32_t arch_token, const char *name);
uint32_t mr_seccomp_arch_resolve_name(const char *name);
uint32_t mr_seccomp_arch_native(void);
unsigned int mr_seccomp_api_get(void);
unsigned int mr_seccomp_version(void);
uint32_t mr_scmp_act_errno(uint32_t errno_ret);
uint32_t mr_scmp_act_trace(uint32_t msg);
#endif
