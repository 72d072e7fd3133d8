"""Reading other frameworks' files without their frameworks (PyTorch checkpoints as numpy)."""

from jaxdiff.io.torch_zip import ScriptObject, flatten_arrays, load, load_arrays

__all__ = ["ScriptObject", "flatten_arrays", "load", "load_arrays"]
