"""pytest-benchmark suite over rnnfast._bench (shapes, runners and checks live there).

Options: ``--bench-threads N`` (default: rnnfast.get_num_threads()), ``--bench-seed S``.
"""
import pytest


def pytest_addoption(parser):
    group = parser.getgroup("rnnfast bench")
    group.addoption("--bench-threads", type=int, default=None,
                    help="threads for rnnfast and every peer (default: "
                         "rnnfast.get_num_threads())")
    group.addoption("--bench-seed", type=int, default=0,
                    help="seed of the weights, inputs and lengths")


@pytest.fixture(scope="session")
def bench_threads(request):
    import rnnfast
    n = request.config.getoption("--bench-threads")
    return n if n is not None else rnnfast.get_num_threads()


@pytest.fixture(scope="session")
def bench_env(bench_threads):
    """Thread counts equalised for the whole session; the header facts of the run."""
    from rnnfast import _bench
    env = _bench.environment(bench_threads, 0)   # loads rnnfast's kernels (OpenMP) first
    if _bench.get_runner("torch").unavailable() is None:
        import torch  # noqa: F401  (so that ThreadSettings sets its thread count too)
    settings = _bench.ThreadSettings(bench_threads)
    env["numpy_blas_threads"] = settings.blas
    yield env
    settings.restore()


@pytest.fixture(scope="session")
def bench_cases(request, bench_threads, bench_env):
    """``bench_cases(shape_id) -> (case, rnnfast outputs)``, built once per shape."""
    from rnnfast import _bench
    seed = request.config.getoption("--bench-seed")
    cache = {}

    def get(shape_id):
        if shape_id not in cache:
            cache.clear()   # one shape's arrays alive at a time (tests run shape by shape)
            case = _bench.Case(_bench.SHAPES[shape_id], seed)
            entry, _, ref = _bench.prepare_checked(_bench.get_runner("rnnfast"), case,
                                                   bench_threads)
            if entry["status"] != "ok":
                pytest.fail(f"rnnfast failed on {shape_id}: {entry.get('reason')}")
            cache[shape_id] = (case, ref)
        return cache[shape_id]

    return get
