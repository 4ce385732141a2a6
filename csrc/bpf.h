/* minirun's bpf(2) calls for cgroup device filters (BPF_PROG_TYPE_CGROUP_DEVICE):
 * load a program minirun assembled itself, attach it to a cgroup2 directory, list,
 * replace and detach the programs attached there. Every function returns -1 and leaves
 * errno set on failure; minirun/cgroups/devices.py turns that into a clear error. */
#ifndef MINIRUN_BPF_H
#define MINIRUN_BPF_H
#include <stdint.h>
#include <linux/bpf.h>

int mr_bpf_load_device_prog(const void *insns, unsigned int insn_cnt, const char *license,
                            char *log_buf, unsigned int log_size);
int mr_bpf_attach_device_prog(int cgroup_fd, int prog_fd, int replace_fd);
int mr_bpf_detach_device_prog(int cgroup_fd, int prog_fd);
int mr_bpf_query_device_progs(int cgroup_fd, uint32_t *ids, uint32_t *count);
int mr_bpf_prog_fd_by_id(uint32_t id);
#endif
