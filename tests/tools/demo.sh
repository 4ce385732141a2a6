#!/bin/sh
# Runs INSIDE the demo container (copied to /demo.sh of its rootfs by `make demo`).
# It only uses busybox applets and shows what isolation the container sees.

section() {
    echo
    echo "=== $1"
    [ -n "$2" ] && echo "    ($2)"
}

echo "Hello from inside a container."

section "Process ID" "a new PID namespace: the first process in it is PID 1, like init"
echo "my pid: $$"
echo "processes I can see:"
ps -o pid,user,args

section "Hostname" "a new UTS namespace: the hostname comes from config.json"
hostname

section "User" "process.user in config.json"
id

section "Root filesystem" "pivot_root into the bundle's rootfs; root.readonly is true"
ls /
if touch /demo-write-test 2>/dev/null; then
    echo "/ is writable"
    rm -f /demo-write-test
else
    echo "writing to / fails: it is mounted read-only"
fi

section "Mount table" "a new mount namespace: only the container's own mounts"
cat /proc/self/mounts

section "Network interfaces" "a new network namespace: only a loopback device"
ip link

section "Capabilities" "only the few listed in config.json survive; root is not all-powerful"
grep Cap /proc/self/status
# Capability numbers, from linux/capability.h (bit N of CapEff = capability N).
CAPS="CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
CHECKPOINT_RESTORE"
eff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
echo "CapEff $eff decoded:"
bit=0
for name in $CAPS; do
    if [ $(( (0x$eff >> bit) & 1 )) -eq 1 ]; then
        echo "    CAP_$name"
    fi
    bit=$((bit + 1))
done

section "Security" "no_new_privs and seccomp state of this process"
grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status

section "Control group" "the cgroup the runtime placed the container in"
cat /proc/self/cgroup

echo
echo "Done: the container exits and the runtime removes it."
