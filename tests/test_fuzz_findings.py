"""Regressions for inputs the fuzz harness (tests/fuzz/run_fuzz.py) found raising the wrong
exception type: each must now be a clean ValueError / TypeError with a message."""
import io
import zipfile

import numpy as np
import pytest

import rnnfast


def test_huge_non_native_input_is_rejected_before_copying():
    gru = rnnfast.GRU(3, 1, batch_first=True, dtype=np.float64, seed=0)
    x = np.broadcast_to(np.ones(1, ">f8"), (1, 2**40, 3))     # 24 TiB if copied
    with pytest.raises(ValueError, match="native"):
        gru(x)


def test_bytes_path_loads(tmp_path):
    lstm = rnnfast.LSTM(3, 4, seed=0)
    path = tmp_path / "m.npz"
    lstm.save(path)
    again = rnnfast.LSTM.load(str(path).encode())
    for name, p in lstm.named_parameters():
        np.testing.assert_array_equal(getattr(again, name), p)


def _saved_bytes(tmp_path):
    path = tmp_path / "m.npz"
    rnnfast.GRU(3, 4, seed=0).save(path)
    return path, bytearray(path.read_bytes())


def test_unknown_compression_method_is_a_value_error(tmp_path):
    path, data = _saved_bytes(tmp_path)
    # the compression method field of the first local header (offset 8) -> 99
    data[8:10] = (99).to_bytes(2, "little")
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:   # central directory still says 0
        zf.namelist()
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 10:cd + 12] = (99).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a valid rnnfast layer file"):
        rnnfast.GRU.load(path)


def _headers(data, sig):
    """Offsets of every zip header with signature `sig` in `data`."""
    pos = data.find(sig)
    while pos >= 0:
        yield pos
        pos = data.find(sig, pos + 4)


def test_unsupported_zip_version_is_a_value_error(tmp_path):
    path, data = _saved_bytes(tmp_path)
    # "version needed to extract" in every central directory entry -> 10.9 (109)
    for pos in _headers(data, b"PK\x01\x02"):
        data[pos + 6:pos + 8] = (109).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a valid rnnfast layer file"):
        rnnfast.GRU.load(path)


def test_entry_flagged_encrypted_is_a_value_error(tmp_path):
    path, data = _saved_bytes(tmp_path)
    # set bit 0 ("encrypted") of the general purpose flags in every header
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        for pos in _headers(data, sig):
            data[pos + off] |= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a valid rnnfast layer file"):
        rnnfast.GRU.load(path)


def test_streamer_huge_broadcast_chunk_without_out_is_a_value_error():
    """Fuzz finding (stream family, 100,000 inputs): a chunk that is a broadcast view
    claiming 2^40 steps, given without out=, made the streamer allocate its 16 TiB output
    (MemoryError). Now a ValueError before any allocation."""
    import rnnfast
    layer = rnnfast.LSTM(1, 4, num_layers=2, bias=False, seed=0).eval()
    s = rnnfast.Streamer(layer, 1)
    x = np.broadcast_to(np.float32(1.0), (2**40, 1, 1))
    with pytest.raises(ValueError, match="output of this call would take"):
        s.step(x)
    y = s.step(np.ones((3, 1, 1), np.float32))   # the streamer still works
    assert y.shape == (3, 1, 4)
