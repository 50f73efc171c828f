"""Version, the thread count every kernel uses, and `show_config()`.

Thread count resolution (one place for the whole package): `set_num_threads(n)` if called,
else the environment variable RNNFAST_NUM_THREADS, else OMP_NUM_THREADS (first entry of a
nested list), else the CPUs this process may run on. That count is then capped by
OpenMP's own limit for the calling thread (`omp_get_max_threads()`), which is how
OMP_NUM_THREADS and threadpoolctl (`threadpool_limits(1, user_api="openmp")`, which
lists rnnfast's OpenMP runtime) limit rnnfast. The kernels receive the count explicitly
with each call; rnnfast never changes OpenMP's global setting, so it does not disturb
other OpenMP users in the same process.
"""
import os
import platform
import sys

from ._version import __version__

__all__ = ["set_num_threads", "get_num_threads", "show_config", "config"]

_num_threads = None
_default_threads = None   # environment / CPU default, read once (see get_num_threads)


def _available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _threads_from_env():
    for var in ("RNNFAST_NUM_THREADS", "OMP_NUM_THREADS"):
        raw = os.environ.get(var, "").strip()
        if not raw:
            continue
        try:
            value = int(raw.split(",")[0])
        except ValueError:
            value = 0
        if value >= 1:
            return value
        import warnings
        warnings.warn(f"rnnfast: ignoring {var}={raw!r}: expected an integer >= 1",
                      RuntimeWarning, stacklevel=3)
    return None


def set_num_threads(n):
    """Set the number of threads rnnfast's kernels use.

    Parameters
    ----------
    n : int >= 1, or None
        Thread count; None goes back to the environment / CPU default.
    """
    global _num_threads, _default_threads
    if n is None:
        _default_threads = None  # re-read the environment at the next call
    else:
        if isinstance(n, bool) or not hasattr(n, "__index__"):
            raise TypeError(f"set_num_threads: 'n' must be an int >= 1 or None, got {n!r}")
        n = n.__index__()
        if n < 1:
            raise ValueError(f"set_num_threads: 'n' must be an int >= 1, got {n}")
    _num_threads = n


def get_num_threads():
    """Number of threads rnnfast's kernels use (see the module docstring for the order).

    The environment variables are read at the first call (and again after
    ``set_num_threads(None)``), not at every kernel call.
    """
    global _default_threads, _omp_max
    if _num_threads is not None:
        wanted = _num_threads
    else:
        if _default_threads is None:
            _default_threads = _threads_from_env() or _available_cpus()
        wanted = _default_threads
    if _omp_max is None:   # looked up once: an import per kernel call costs ~2 us
        try:
            from ._cpu._kernels import openmp_max_threads as _omp_max
        except ImportError:  # compiled core not built: only the reference backend runs
            return wanted
    # asked every call: threadpoolctl and omp_set_num_threads change it at run time
    return max(1, min(wanted, _omp_max()))


_omp_max = None


def _cpu_info():
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine()):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    levels = [name for name in ("sse2", "avx", "avx2", "fma", "avx512f", "avx512bw",
                                "avx512vl", "avx512_bf16", "avx512_vnni", "amx_tile")
              if name in flags]
    return model, levels


def _numpy_blas():
    """NumPy's BLAS (used by the reference and by users' own code, not by the kernels)."""
    import numpy as np
    info = {"name": "unknown", "version": "unknown"}
    try:
        deps = np.show_config(mode="dicts").get("Build Dependencies", {})
        blas = deps.get("blas", {})
        info["name"], info["version"] = blas.get("name", "unknown"), blas.get("version", "unknown")
    except Exception:  # NumPy < 1.25 has no mode="dicts"
        pass
    try:  # optional: threadpoolctl knows which kernel OpenBLAS picked at run time
        import threadpoolctl
        for pool in threadpoolctl.threadpool_info():
            if pool.get("user_api") == "blas" and "numpy" in pool.get("filepath", ""):
                info["kernel"] = pool.get("architecture")
                info["threads"] = pool.get("num_threads")
                break
    except ImportError:
        info["kernel"] = "unknown (pip install threadpoolctl to see it)"
    return info


def config():
    """The build and run-time configuration as a dict (what `show_config` prints)."""
    import numpy as np
    from ._cpu import _kernels
    model, levels = _cpu_info()
    return {
        "rnnfast": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": model,
        "cpu_simd": levels,
        "openmp": _kernels.openmp_enabled(),
        "threads": get_num_threads(),
        "gemm": {"library": "rnnfast built-in (csrc/kernels_impl.h)",
                 "kernel": _kernels.isa_name()},
        "numpy_blas": _numpy_blas(),
    }


def show_config(file=None):
    """Print rnnfast's version, OpenMP status and threads, matrix-product library and the
    kernel it selected, and the CPU's SIMD level. Returns the same as a dict."""
    cfg = config()
    nb = cfg["numpy_blas"]
    lines = [
        f"rnnfast {cfg['rnnfast']} (python {cfg['python']}, numpy {cfg['numpy']})",
        f"  platform : {cfg['platform']}",
        f"  cpu      : {cfg['cpu']}",
        f"  simd     : {' '.join(cfg['cpu_simd']) or 'none detected'}",
        f"  openmp   : {'on' if cfg['openmp'] else 'off (serial build)'}, "
        f"threads = {cfg['threads']}",
        f"  gemm     : {cfg['gemm']['library']}, kernel = {cfg['gemm']['kernel']}",
        f"  numpy's BLAS (reference backend only): {nb['name']} {nb['version']}"
        + (f", kernel = {nb['kernel']}" if "kernel" in nb else ""),
    ]
    print("\n".join(lines), file=file or sys.stdout)
    return cfg
