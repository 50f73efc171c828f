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


def test_unsupported_zip_version_is_a_value_error(tmp_path):
    path, data = _saved_bytes(tmp_path)
    cd = data.rfind(b"PK\x01\x02")
    # "version needed to extract" in the central directory -> 10.9 (109)
    for off in range(len(data)):
        pos = data.find(b"PK\x01\x02", off)
        if pos < 0:
            break
        data[pos + 6:pos + 8] = (109).to_bytes(2, "little")
        off = pos + 4
    data[cd + 6:cd + 8] = (109).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a valid rnnfast layer file"):
        rnnfast.GRU.load(path)


def test_entry_flagged_encrypted_is_a_value_error(tmp_path):
    path, data = _saved_bytes(tmp_path)
    # set bit 0 ("encrypted") of the general purpose flags in every header
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = data.find(sig)
        while pos >= 0:
            data[pos + off] |= 1
            pos = data.find(sig, pos + 4)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a valid rnnfast layer file"):
        rnnfast.GRU.load(path)
