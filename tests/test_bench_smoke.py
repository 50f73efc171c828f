"""Smoke test of the benchmark engine (rnnfast._bench): tiny made-up shapes, rnnfast and
the NumPy loop only (plus PyTorch / ONNX Runtime agreement on tiny shapes when they are
installed). Checks the report's structure and that the agreement check catches a wrong
peer. Never asserts anything about time."""
import json

import numpy as np
import pytest

from rnnfast import _bench as B

TINY = [
    B.Shape("X1", "gru", 8, 2, 5),
    B.Shape("X2", "lstm", 6, 3, 4, D=2, L=2, lengths=True, I=5),
    B.Shape("X3", "rnn_tanh", 7, 2, 3, mode="training"),
]


class WrongNumpyLoop(B.NumpyLoopRunner):
    """The NumPy loop with its output nudged by 1%: must be reported WRONG."""

    name, label = "numpy_wrong", "wrong NumPy loop"

    def _prepare(self, case, threads):
        prepared = super()._prepare(case, threads)
        outputs = prepared.outputs

        def wrong():
            out = outputs()
            out["y"] = out["y"] * 1.01
            return out
        prepared.outputs = wrong
        return prepared


def _run(shapes, runners):
    return B.run(shapes=shapes, runners=runners, threads=1, rounds=2, warmup=1,
                 min_time=0.0, memory=False, sgemm=False, settle=False, load_window=0,
                 log=lambda m: None)


def test_engine_report_structure_and_wrong_peer(tmp_path):
    runners = [B.get_runner("rnnfast"), B.get_runner("numpy"), WrongNumpyLoop()]
    report = _run(TINY, runners)
    h = report["header"]
    for key in ("date", "cpu", "threads", "versions", "rnnfast_kernel", "timing", "runners"):
        assert key in h
    assert h["threads"] == 1 and h["versions"]["rnnfast"]
    assert [r["shape"]["id"] for r in report["shapes"]] == ["X1", "X2", "X3"]

    x1, x2, x3 = report["shapes"]
    for res in (x1, x2):   # inference: every runner ran; the wrong one was caught
        rn, npl, bad = (res["runners"][n] for n in ("rnnfast", "numpy", "numpy_wrong"))
        assert rn["status"] == "ok" and len(rn["times_ms"]) == 2 and rn["median_ms"] > 0
        assert npl["status"] == "ok" and max(npl["agreement"].values()) <= B.TOL
        assert "y" in npl["agreement"] and "h_n" in npl["agreement"]
        assert bad["status"] == "WRONG" and "median_ms" not in bad
        assert bad["agreement"]["y"] > B.TOL and "y" in bad["reason"]
        assert set(res["ratios"]) == {"numpy"}
        assert res["us_per_step"] > 0 and res["gflops"] > 0
    assert x2["lengths"] is not None and len(x2["lengths"]) == 3
    assert all(2 <= n <= 4 for n in x2["lengths"])   # uniform in [T/2, T], T = 4
    assert "c_n" in x2["runners"]["numpy"]["agreement"]
    # training: the NumPy loop is inference-only
    assert x3["runners"]["rnnfast"]["status"] == "ok"
    assert x3["runners"]["numpy"]["status"] == "-"
    assert x3["ratios"] == {}

    text = B.format_report(report)
    assert "WRONG" in text and "X1" in text and "X3" in text
    # the whole report is JSON-able
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report, default=B._json_default))
    assert json.loads(path.read_text())["shapes"][0]["shape"]["id"] == "X1"


def test_missing_peer_is_na_not_a_number():
    class Missing(B.NumpyLoopRunner):
        name, label, requires = "ghost", "ghost peer", ("no_such_module_rnnfast_test",)
    report = _run(TINY[:1], [B.get_runner("rnnfast"), Missing()])
    entry = report["shapes"][0]["runners"]["ghost"]
    assert entry["status"] == "n/a" and "median_ms" not in entry
    assert "n/a" in B.format_report(report)


def test_check_agreement():
    ref = {"y": np.array([1.0, -2.0]), "h_n": np.array([0.5]), "c_n": None}
    ok, err = B.check_agreement(ref, {"y": np.array([1.0, -2.0005]), "h_n": np.array([0.5])})
    assert ok and set(err) == {"y", "h_n"} and err["y"] == pytest.approx(2.5e-4)
    assert not B.check_agreement(ref, {"y": np.array([1.0, -2.01]), "h_n": [0.5]})[0]
    assert not B.check_agreement(ref, {"y": np.array([1.0, np.nan]), "h_n": [0.5]})[0]
    assert not B.check_agreement(ref, {"y": np.zeros(3), "h_n": [0.5]})[0]
    assert not B.check_agreement(ref, {})[0]   # nothing compared is not agreement


def test_shapes_and_flops():
    assert list(B.SHAPES) == ["L1", "L2", "L5", "L6", "L7", "S1", "G1", "G2", "G4", "V1",
                              "V3", "T1", "T2", "T4", "T5", "T6", "T7", "T8", "M1"]
    s = B.SHAPES["L1"]   # 2 * 4 * N T * H * (I + H)
    assert B.flops(s) == 2 * 4 * 1 * 150 * 256 * 512
    t8 = B.SHAPES["T8"]  # training x3, two directions
    assert B.flops(t8) == 3 * 2 * (2 * 3 * 20 * 100 * 800 * 1600)
    m1 = B.SHAPES["M1"]
    assert m1.L == 2 and m1.lengths and m1.training
    assert B.flops(m1, lengths=np.full(32, 50)) == 3 * 2 * (2 * 4 * 32 * 50 * 256 * 512)
    assert {k for k, v in B.SHAPES.items() if v.memory} == {"T2", "T5", "M1"}


def test_weight_bytes_and_bandwidth_block():
    # L2: LSTM H512, W_ih once + W_hh at each of 25 steps, float32
    per_call, rec = B.weight_bytes(B.SHAPES["L2"])
    assert rec == 4 * 512 * 512 * 4 and per_call == 4 * 512 * (512 + 25 * 512) * 4
    per_call, rec = B.weight_bytes(B.SHAPES["L7"])   # two directions
    assert rec == 2 * 4 * 256 * 256 * 4
    bw = B.measure_read_bandwidth(1 << 20, 1, repeats=2, target_s=0.001)
    assert bw is None or bw > 0
    batch1 = B.Shape("X4", "gru", 8, 1, 5)
    report = B.run(shapes=[batch1, TINY[0]], runners=[B.get_runner("rnnfast")], threads=1,
                   rounds=1, warmup=1, min_time=0.0, memory=False, sgemm=False,
                   settle=False, load_window=0, log=lambda m: None)
    b = report["shapes"][0]["bandwidth"]
    assert b["bytes_per_call"] == B.weight_bytes(batch1)[0] and b["streamed_gbs"] > 0
    # the time loop alone: W_hh at each of the T steps over its own median time
    assert b["recurrence_ms"] > 0
    assert b["recurrence_gbs"] == pytest.approx(
        B.weight_bytes(batch1)[1] * batch1.T / (b["recurrence_ms"] * 1e-3) / 1e9)
    assert "recurrence GB/s" in B.format_report(report)
    # only one-layer inference shapes have a companion
    assert B.measure_recurrence(B.SHAPES["T1"], 1) is None
    assert B.measure_recurrence(B.replace(batch1, L=2), 1) is None
    assert "bandwidth" not in report["shapes"][1]     # N = 2: not a batch-1 shape
    assert "batch-1 weight streaming" in B.format_report(report)


def test_stream_read_sums_what_it_reads():
    kernels = pytest.importorskip("rnnfast._cpu._kernels")
    for n in (0, 5, 1000, 4099):   # whole vector blocks and a tail
        a = np.arange(n, dtype=np.float32)
        assert kernels.stream_read(a, 3, 2) == pytest.approx(3 * float(a.sum()))
    with pytest.raises(ValueError, match="reps"):
        kernels.stream_read(a, 0, 1)
    with pytest.raises(TypeError, match="dtype"):
        kernels.stream_read(a.astype(np.float64), 1, 1)


def test_core_roundtrip_probe():
    kernels = pytest.importorskip("rnnfast._cpu._kernels")
    ns = kernels.core_roundtrip_ns(2000, 0.5)
    if kernels.openmp_enabled():
        # two threads on one CPU give up (None) rather than spin for long
        assert ns is None or 1 < ns < 1e7
    else:
        assert ns is None
    with pytest.raises(ValueError, match="iters"):
        kernels.core_roundtrip_ns(0)
    with pytest.raises(ValueError, match="max_seconds"):
        kernels.core_roundtrip_ns(10, 0)
    report = B.run(shapes=[TINY[0]], runners=[B.get_runner("rnnfast")], threads=2,
                   rounds=2, warmup=1, min_time=0.0, memory=False, sgemm=False,
                   settle=False, load_window=0, log=lambda m: None)
    res = report["shapes"][0]
    if B.core_roundtrip() is not None:
        assert len(res["roundtrip_ns"]) == 2 and res["roundtrip_ns_median"] > 0
    assert "c2c ns" in B.format_report(report)


def test_cli_rejects_unknown_shape(capsys):
    from rnnfast.__main__ import main
    assert main(["bench", "--shapes", "L1,ZZ9"]) == 2
    assert "ZZ9" in capsys.readouterr().err


@pytest.mark.parametrize("peer", ["torch", "ort"])
def test_peers_agree_on_tiny_shapes(peer):
    """The PyTorch and ONNX Runtime runners load the same weights (gate orders, biases,
    bidirectional stacking, lengths) and agree with rnnfast."""
    runner = B.get_runner(peer)
    if runner.unavailable():
        pytest.skip(runner.unavailable())
    shapes = TINY + [B.Shape("X4", "lstm", 5, 3, 6, L=2, lengths=True, mode="training")]
    report = _run(shapes, [B.get_runner("rnnfast"), runner])
    for res in report["shapes"]:
        entry = res["runners"][peer]
        if runner.not_applicable(B.Shape(**res["shape"])):
            assert entry["status"] == "-"
        else:
            assert entry["status"] == "ok", (res["shape"]["id"], entry)


def test_calls_per_sample_ignores_a_slow_first_call(monkeypatch):
    """The count comes from batches after the warm-up, not from single calls: a first
    call 500x slower than the rest (a sleeping thread pool, cold caches) must not shrink
    the samples to a few calls. The calls advance a fake clock, so nothing here depends
    on how fast this machine is."""
    import types
    clock = {"now": 0.0, "calls": 0}

    def fn():
        clock["calls"] += 1
        clock["now"] += 0.5 if clock["calls"] == 1 else 0.001

    monkeypatch.setattr(B, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    assert 48 <= B.calls_per_sample(fn, 0.05, warmup=1) <= 51   # 50; the old rule gave 1
    clock.update(now=0.0, calls=0)
    assert 48 <= B.calls_per_sample(fn, 0.05, warmup=0) <= 51   # warm-up 0 still makes one call
    assert B.calls_per_sample(lambda: None, 0.0) == 1


def test_ab_script_times_two_builds(capsys):
    """bench/ab.py: alternating child processes, one line with both medians and the
    per-round ratio (here the same build twice, on a tiny shape)."""
    import importlib.util
    import pathlib
    import rnnfast
    root = pathlib.Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("ab", root / "bench" / "ab.py")
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    build = str(pathlib.Path(rnnfast.__file__).resolve().parents[1])
    assert ab.main([build, build, "--rounds", "2", "--samples", "1", "gru", "8", "2", "3",
                    "--train", "--input", "5"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("gru H8 N2 T3 I5 train: old ")
    assert "new/old per round: median" in line and "2 rounds" in line
    assert ab.time_layer("lstm", 4, 1, 2, 3, True, False, 1) > 0
