"""Import and export recurrent models of PyTorch, Keras and ONNX.

Nothing here imports torch, keras or onnx unless you pass their objects (or ask for
one with :func:`to_torch`); ONNX files are read and written with rnnfast's own
protobuf reader and writer.
"""
from ._torch import from_torch, from_torch_state_dict, to_torch, to_torch_state_dict
from ._keras import KerasRNN, from_keras, from_keras_weights, to_keras_weights
from ._onnx import OnnxModel, from_onnx, to_onnx

__all__ = ["from_torch", "from_torch_state_dict", "to_torch", "to_torch_state_dict",
           "from_keras", "from_keras_weights", "to_keras_weights", "KerasRNN",
           "from_onnx", "to_onnx", "OnnxModel"]
