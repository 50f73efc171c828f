"""A warmed-up streaming step calls no C allocator at all: neither NumPy nor the kernels
(whose scratch is kept per thread between calls) nor anything else in the process.

Measured with a tiny LD_PRELOAD library that counts malloc / calloc / realloc /
aligned_alloc / posix_memalign calls, built with the C compiler at test time (skipped
without one). CPython's small-object allocator serves Python's own short-lived objects
from its arenas, so any C-level allocation counted here is a real one."""
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

from conftest import run_python

pytest.importorskip("rnnfast._cpu", reason="compiled backend not built")

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
static long n_alloc;
#define COUNT() __atomic_add_fetch(&n_alloc, 1, __ATOMIC_RELAXED)
void *malloc(size_t n) {
    static void *(*f)(size_t); if (!f) f = dlsym(RTLD_NEXT, "malloc");
    COUNT(); return f(n);
}
void *calloc(size_t a, size_t b) {
    static void *(*f)(size_t, size_t);
    if (!f) { extern void *__libc_calloc(size_t, size_t); f = __libc_calloc; }
    COUNT(); return f(a, b);
}
void *realloc(void *p, size_t n) {
    static void *(*f)(void *, size_t); if (!f) f = dlsym(RTLD_NEXT, "realloc");
    COUNT(); return f(p, n);
}
void *aligned_alloc(size_t a, size_t n) {
    static void *(*f)(size_t, size_t); if (!f) f = dlsym(RTLD_NEXT, "aligned_alloc");
    COUNT(); return f(a, n);
}
int posix_memalign(void **p, size_t a, size_t n) {
    static int (*f)(void **, size_t, size_t); if (!f) f = dlsym(RTLD_NEXT, "posix_memalign");
    COUNT(); return f(p, a, n);
}
long rf_count_allocs(void) { return __atomic_load_n(&n_alloc, __ATOMIC_RELAXED); }
"""

CODE = textwrap.dedent("""
    import ctypes, numpy as np, rnnfast
    count = ctypes.CDLL(None).rf_count_allocs
    count.restype = ctypes.c_long
    rnnfast.set_num_threads({threads})
    layer = rnnfast.{cls}(16, 32, num_layers=2, seed=0, {kw}).eval()
    s = rnnfast.Streamer(layer, 4, max_chunk=8)
    x1, xc = np.ones((4, 16), np.float32), np.ones((8, 4, 16), np.float32)
    P = s.h.shape[-1]
    o1, oc = np.empty((4, P), np.float32), np.empty((8, 4, P), np.float32)
    reset = np.zeros((8, 4), bool)
    reset[3, 1] = True
    for _ in range(50):
        s.step(x1, out=o1); s.step(xc, out=oc); s.step(xc, reset=reset, out=oc)
    c0 = count()
    for _ in range(500):
        s.step(x1, out=o1); s.step(xc, out=oc); s.step(xc, reset=reset, out=oc)
    print("ALLOCS", count() - c0)
""")


@pytest.fixture(scope="module")
def shim():
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None or not sys.platform.startswith("linux"):
        pytest.skip("needs a C compiler on Linux for the counting shim")
    d = tempfile.mkdtemp()
    src, lib = os.path.join(d, "count.c"), os.path.join(d, "libcount.so")
    with open(src, "w") as f:
        f.write(SHIM)
    r = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", lib, src, "-ldl"],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip("could not build the counting shim: " + r.stderr[-300:])
    yield lib
    shutil.rmtree(d, ignore_errors=True)


def _allocs(shim, threads, cls, kw):
    env = dict(os.environ, LD_PRELOAD=shim)
    r = run_python(CODE.format(threads=threads, cls=cls, kw=kw), env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return int(r.stdout.split("ALLOCS")[-1])


def test_the_shim_counts(shim):
    """Control: the counter sees allocations (NumPy arrays made in the loop)."""
    code = ("import ctypes, numpy as np\n"
            "count = ctypes.CDLL(None).rf_count_allocs; count.restype = ctypes.c_long\n"
            "c0 = count()\n"
            "for _ in range(100): np.ones(4096)\n"
            "print('ALLOCS', count() - c0)")
    r = run_python(code, env=dict(os.environ, LD_PRELOAD=shim))
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.split("ALLOCS")[-1]) >= 100


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cls,kw", [("LSTM", "proj_size=8"), ("GRU", ""),
                                    ("RNN", "nonlinearity='relu'"),
                                    ("GRU", "clip=2.0"), ("LSTM", "peephole=True")])
def test_streaming_steps_allocate_nothing(shim, threads, cls, kw):
    assert _allocs(shim, threads, cls, kw) == 0
