/* See seccomp.h. Included as <seccomp.h>: found in csrc/ through the include
 * path, which lets its #include_next find libseccomp's header. */
#include <seccomp.h>
#include <errno.h>
#include <stddef.h>

/* libseccomp returns -errno; turn it into -1 + errno like the kernel does. */
static int rc_errno(int rc)
{
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return rc;
}

void *mr_seccomp_init(uint32_t def_action)
{
    void *ctx = seccomp_init(def_action);
    if (ctx == NULL)
        errno = EINVAL; /* seccomp_init only fails on a bad action or no memory */
    return ctx;
}

void mr_seccomp_release(void *ctx) { seccomp_release(ctx); }

int mr_seccomp_arch_add(void *ctx, uint32_t arch_token)
{
    return rc_errno(seccomp_arch_add(ctx, arch_token));
}

int mr_seccomp_attr_set(void *ctx, int attr, uint32_t value)
{
    return rc_errno(seccomp_attr_set(ctx, (enum scmp_filter_attr)attr, value));
}

int mr_seccomp_attr_get(void *ctx, int attr, uint32_t *value)
{
    return rc_errno(seccomp_attr_get(ctx, (enum scmp_filter_attr)attr, value));
}

/* One rule: `count` argument comparisons, ANDed (libseccomp refuses two on the
 * same argument index in one rule: the caller splits those into rules). */
int mr_seccomp_rule_add(void *ctx, uint32_t action, int syscall, unsigned int count,
                        const unsigned int *index, const int *op,
                        const uint64_t *datum_a, const uint64_t *datum_b)
{
    struct scmp_arg_cmp cmp[6];
    unsigned int i;

    if (count > 6) {
        errno = EINVAL;
        return -1;
    }
    for (i = 0; i < count; i++) {
        cmp[i].arg = index[i];
        cmp[i].op = (enum scmp_compare)op[i];
        cmp[i].datum_a = datum_a[i];
        cmp[i].datum_b = datum_b[i];
    }
    return rc_errno(seccomp_rule_add_array(ctx, action, syscall, count, cmp));
}

int mr_seccomp_load(void *ctx) { return rc_errno(seccomp_load(ctx)); }

int mr_seccomp_notify_fd(void *ctx) { return rc_errno(seccomp_notify_fd(ctx)); }

int mr_seccomp_syscall_resolve_name(const char *name)
{
    return seccomp_syscall_resolve_name(name);
}

int mr_seccomp_syscall_resolve_name_arch(uint32_t arch_token, const char *name)
{
    return seccomp_syscall_resolve_name_arch(arch_token, name);
}

uint32_t mr_seccomp_arch_resolve_name(const char *name) { return seccomp_arch_resolve_name(name); }

uint32_t mr_seccomp_arch_native(void) { return seccomp_arch_native(); }

unsigned int mr_seccomp_api_get(void) { return seccomp_api_get(); }

/* The library actually loaded (not the header built against): major<<16 | minor<<8 | micro. */
unsigned int mr_seccomp_version(void)
{
    const struct scmp_version *v = seccomp_version();
    return (v->major << 16) | (v->minor << 8) | v->micro;
}

uint32_t mr_scmp_act_errno(uint32_t errno_ret) { return SCMP_ACT_ERRNO(errno_ret); }

uint32_t mr_scmp_act_trace(uint32_t msg) { return SCMP_ACT_TRACE(msg); }
