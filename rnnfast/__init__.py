"""rnnfast: fast recurrent networks (RNN, LSTM, GRU) on the CPU, forward and BPTT.

PyTorch's layer vocabulary and weight layouts over NumPy arrays, with a compiled,
OpenMP-parallel core and a pure-NumPy reference implementation that states the math.
"""
from ._version import __version__
from ._config import get_num_threads, set_num_threads, show_config
from . import functional
from .nn import GRU, LSTM, RNN
from .stream import Streamer
# training toolkit (NumPy only; tqdm is imported lazily by fit(progress=True))
from . import layers, losses, optim, init, models
from .layers import Embedding, Linear
from .models import Sequential, Seq2Seq, TrainingDiverged
from ._gradcheck import gradcheck
# import / export of PyTorch, Keras and ONNX models (no framework is imported here)
from .interop import (from_keras, from_keras_weights, from_onnx, from_torch,
                      from_torch_state_dict, to_keras_weights, to_onnx, to_torch,
                      to_torch_state_dict)

try:  # load the compiled core now, so its OpenMP runtime is visible to threadpoolctl
    from ._cpu import _kernels as _kernels  # noqa: F401
except ImportError:  # not built: only backend="reference" works (functional says so)
    pass

__all__ = ["RNN", "LSTM", "GRU", "Streamer", "functional", "layers", "losses", "optim", "init",
           "models", "Embedding", "Linear", "Sequential", "Seq2Seq", "TrainingDiverged",
           "gradcheck", "from_torch", "from_torch_state_dict", "to_torch",
           "to_torch_state_dict", "from_keras", "from_keras_weights", "to_keras_weights",
           "from_onnx", "to_onnx", "show_config", "set_num_threads", "get_num_threads",
           "__version__"]
