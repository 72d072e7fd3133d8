"""jaxdiff.io.torch_zip reads torch files without torch.

Fixtures: tests/fixtures/torch_zip/*.pt, written once by tools/make_torch_zip_fixture.py with CPU
torch; every tensor there is a function of ``arange``, rebuilt here with numpy.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np
import pytest

from jaxdiff.io import torch_zip

HERE = os.path.join(os.path.dirname(__file__), "fixtures", "torch_zip")


def expected_state_dict() -> dict[str, np.ndarray]:
    base = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    return {
        "w": base,
        "wt": base.transpose(2, 1, 0),
        "slice": base[1, :, 1:3],
        "half": (np.arange(6, dtype=np.float16).reshape(2, 3) / 4).astype(np.float16),
        "bf16": np.array([1.5, -2.25, 3.0], ml_dtypes.bfloat16),
        "long": np.arange(-3, 3, dtype=np.int64),
        "bool": np.array([True, False, True]),
        "u8": np.arange(250, 256, dtype=np.uint8),
        "f64": np.linspace(0, 1, 5),
        "scalar": np.array(3.5, np.float32),
        "empty": np.zeros((0, 3), np.float32),
        "param": np.ones(2, np.float32),
    }


@pytest.mark.parametrize("name", ["checkpoint.pt", "legacy.pt"])
def test_checkpoint_formats(name):
    """Zip (torch >= 1.6) and legacy formats: strided/offset views of one storage, all dtypes,
    nested containers, OrderedDict, numpy values; arrays come back contiguous and writeable."""
    obj = torch_zip.load(os.path.join(HERE, name))
    sd = obj["state_dict"]
    assert isinstance(sd, collections.OrderedDict)
    want = expected_state_dict()
    assert list(sd) == list(want)
    for k, v in want.items():
        got = sd[k]
        assert got.dtype == v.dtype and got.shape == v.shape, k
        np.testing.assert_array_equal(got, v, err_msg=k)
        assert got.flags.c_contiguous and got.flags.writeable
    assert obj["epoch"] == 7
    assert obj["nested"]["list"][1] == "text" and obj["nested"]["tuple"] == (1.5, None)
    np.testing.assert_array_equal(obj["nested"]["list"][0], [1, 2])
    np.testing.assert_array_equal(obj["numpy"], np.arange(3, dtype=np.int32))
    assert obj["numpy_scalar"] == 2.5
    sd["w"][0, 0, 0] = -1  # a copy: the transposed view that shared its storage is untouched
    assert sd["wt"][0, 0, 0] == 0
    flat = torch_zip.flatten_arrays(obj)
    assert "state_dict.wt" in flat and "nested.list.0" in flat


def test_torchscript_module():
    """A TorchScript archive: module attributes, parameters and a transposed buffer."""
    obj = torch_zip.load(os.path.join(HERE, "script.pt"))
    assert isinstance(obj, torch_zip.ScriptObject) and obj.qualname.startswith("__torch__.")
    assert obj.stride == 2
    np.testing.assert_array_equal(
        obj.conv.weight, np.arange(54, dtype=np.float32).reshape(3, 2, 3, 3) / 10
    )
    np.testing.assert_array_equal(obj.conv.bias, [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(obj.buf, np.arange(4.0).reshape(2, 2).T)
    assert set(torch_zip.load_arrays(os.path.join(HERE, "script.pt"))) == {
        "buf",
        "conv.weight",
        "conv.bias",
    }


# A hand-written pickle (protocol 2 opcodes) of one tensor, as torch would write it.
def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _tensor_zip(numel, offset, size, stride) -> io.BytesIO:
    pid = _tuple(_str("storage"), b"ctorch\nFloatStorage\n", _str("0"), _str("cpu"), _int(numel))
    args = _tuple(
        pid + b"Q", _int(offset), _tuple(*map(_int, size)), _tuple(*map(_int, stride)), b"\x89N"
    )
    data = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R."
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", data)
        zf.writestr("archive/data/0", np.arange(numel, dtype="<f4").tobytes())
    buf.seek(0)
    return buf


def test_strided_tensor_and_bounds():
    """size/stride/offset are honoured; a view past the end of its storage is refused."""
    got = torch_zip.load(_tensor_zip(20, 3, (2, 3), (1, 5)))
    np.testing.assert_array_equal(got, np.arange(20.0)[3:][np.add.outer([0, 1], [0, 5, 10])])
    with pytest.raises(pickle.UnpicklingError, match="runs past its storage"):
        torch_zip.load(_tensor_zip(12, 3, (2, 3), (1, 5)))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_refuses_arbitrary_globals():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": _Evil()}, protocol=2))
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        torch_zip.load(buf)
