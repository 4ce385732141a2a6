"""cffi (API mode) build of minirun._native, compiled at install time by setup.py.

Every csrc/NAME.c is compiled in, and every csrc/NAME.cdef declares to cffi what
Python may call or read from it (functions and `#define X ...` constants), so a new
concern adds its own pair of files without touching this one; a csrc/NAME.libs file
lists the libraries NAME.c links with (one per line, e.g. `seccomp`).
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = sorted(HERE.glob("*.c"))
CDEFS = sorted(HERE.glob("*.cdef"))
LIBS = [lib for p in sorted(HERE.glob("*.libs")) for lib in p.read_text().split()]

ffibuilder = FFI()
ffibuilder.cdef("\n".join(p.read_text() for p in CDEFS))
ffibuilder.set_source(
    "minirun._native",
    """
    #include <sched.h>
    #include <sys/mount.h>
    #include <sys/prctl.h>
    #include <linux/openat2.h>
    #include <linux/close_range.h>
    #include <linux/mount.h>
    #include <fcntl.h>
    """ + "".join(f'#include "{p.stem}.h"\n' for p in SOURCES if (HERE / f"{p.stem}.h").exists()),
    sources=[f"csrc/{p.name}" for p in SOURCES],
    include_dirs=["csrc"],
    libraries=LIBS,
    extra_compile_args=["-O2", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
