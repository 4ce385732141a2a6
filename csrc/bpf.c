#include "bpf.h"
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sys_bpf(int cmd, union bpf_attr *attr)
{
    return (int)syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

int mr_bpf_load_device_prog(const void *insns, unsigned int insn_cnt, const char *license,
                            char *log_buf, unsigned int log_size)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.insn_cnt = insn_cnt;
    attr.license = (uint64_t)(uintptr_t)license;
    if (log_buf && log_size) {
        attr.log_buf = (uint64_t)(uintptr_t)log_buf;
        attr.log_size = log_size;
        attr.log_level = 1;
    }
    strncpy(attr.prog_name, "minirun_dev", sizeof(attr.prog_name) - 1);
    return sys_bpf(BPF_PROG_LOAD, &attr);
}

/* Attach with BPF_F_ALLOW_MULTI (as runc: programs of parent cgroups keep running);
 * replace_fd >= 0 atomically swaps that previously attached program for this one. */
int mr_bpf_attach_device_prog(int cgroup_fd, int prog_fd, int replace_fd)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.target_fd = cgroup_fd;
    attr.attach_bpf_fd = prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    attr.attach_flags = BPF_F_ALLOW_MULTI;
    if (replace_fd >= 0) {
        attr.attach_flags |= BPF_F_REPLACE;
        attr.replace_bpf_fd = replace_fd;
    }
    return sys_bpf(BPF_PROG_ATTACH, &attr);
}

int mr_bpf_detach_device_prog(int cgroup_fd, int prog_fd)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.target_fd = cgroup_fd;
    attr.attach_bpf_fd = prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    return sys_bpf(BPF_PROG_DETACH, &attr);
}

/* The ids of the device programs attached to this cgroup itself (not inherited ones).
 * *count: capacity of ids on entry, number of programs on return. */
int mr_bpf_query_device_progs(int cgroup_fd, uint32_t *ids, uint32_t *count)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.query.target_fd = cgroup_fd;
    attr.query.attach_type = BPF_CGROUP_DEVICE;
    attr.query.prog_ids = (uint64_t)(uintptr_t)ids;
    attr.query.prog_cnt = *count;
    int ret = sys_bpf(BPF_PROG_QUERY, &attr);
    if (ret == 0 || errno == ENOSPC)
        *count = attr.query.prog_cnt;
    return ret;
}

int mr_bpf_prog_fd_by_id(uint32_t id)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.prog_id = id;
    return sys_bpf(BPF_PROG_GET_FD_BY_ID, &attr);
}
