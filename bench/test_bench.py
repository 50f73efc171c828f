"""Every shape of BENCHMARKS.md for rnnfast and each peer, one pytest-benchmark group per
shape. The shapes, runners and the agreement check come from ``rnnfast._bench`` (the
engine behind ``rnnfast bench``); nothing is duplicated here.

Before timing, each peer's outputs (and, in training, dx and one weight gradient) are
checked against rnnfast's, untimed; a peer that disagrees fails its test instead of
being timed. Missing peers and (peer, mode) pairs that are not benchmarked skip with the
reason. No test asserts anything about time.

Unlike ``rnnfast bench``, pytest-benchmark times one runner at a time (not interleaved):
compare within a group, and prefer ``rnnfast bench`` for ratios on a noisy machine.
"""
import pytest

from rnnfast import _bench

RUNNER_NAMES = ["rnnfast", *_bench.PEERS]


@pytest.mark.parametrize("runner_name", RUNNER_NAMES)
@pytest.mark.parametrize("shape_id", list(_bench.SHAPES))
def test_bench(benchmark, shape_id, runner_name, bench_threads, bench_env, bench_cases):
    shape = _bench.SHAPES[shape_id]
    runner = _bench.get_runner(runner_name)
    why = runner.unavailable() or runner.not_applicable(shape)
    if why:
        pytest.skip(why)
    case, reference = bench_cases(shape_id)
    entry, prepared, _ = _bench.prepare_checked(
        runner, case, bench_threads, None if runner_name == "rnnfast" else reference)
    if entry["status"] in ("n/a", "-"):
        pytest.skip(entry["reason"])
    if entry["status"] != "ok":   # WRONG (disagrees with rnnfast) or error
        pytest.fail(f"{runner.label} on {shape_id}: {entry['status']}: {entry['reason']}")

    benchmark.group = f"{shape_id} {shape.label()} {shape.mode}"
    benchmark.name = f"{shape_id}-{runner_name}"
    benchmark.extra_info.update(
        shape=shape.to_dict(), label=shape.label(), runner=runner_name,
        runner_version=runner.version(), dtype="float32", threads=bench_threads,
        flops=case.flops, first_call_ms=entry["first_ms"], setup_ms=entry["setup_ms"],
        agreement=entry.get("agreement", {}), versions=bench_env["versions"],
        cpu=bench_env["cpu"], rnnfast_kernel=bench_env["rnnfast_kernel"],
        numpy_blas_threads=bench_env["numpy_blas_threads"])
    _bench.quiesce()   # let the previous test's thread pool stop spinning
    benchmark(prepared.run)
