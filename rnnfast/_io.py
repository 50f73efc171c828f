"""Atomic file writes: the one way rnnfast writes a file (layers, models, ONNX export)."""
import os
import secrets


def atomic_write(path, write):
    """Call ``write(f)`` on a fresh temporary file beside ``path``, flush it to disk, then
    rename it over ``path``. On any failure the temporary file is removed and ``path`` is
    untouched (an existing file keeps its old content)."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
