"""Makes tests/fixtures/torch_zip/: tiny torch files that tests/test_torch_zip.py reads.

Run once with CPU torch in a separate environment (jaxdiff never imports torch):

    /tmp/torchenv/bin/python tools/make_torch_zip_fixture.py

Every tensor is a deterministic function of ``arange`` so the test rebuilds the expected arrays
with numpy: strided and offset views sharing one storage, 0-d and empty tensors, float16 /
bfloat16 / float64 / int64 / uint8 / bool, a Parameter, nested dicts, lists, tuples, an
OrderedDict state dict, numpy values. Three files: the zip format of ``torch.save``, the legacy
(torch < 1.6) format of the same object, and a TorchScript module.
"""

from __future__ import annotations

import collections
import os

import numpy as np


def checkpoint(torch):
    base = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    sd = collections.OrderedDict(
        w=base,
        wt=base.transpose(0, 2),
        slice=base[1, :, 1:3],
        half=torch.arange(6, dtype=torch.float16).reshape(2, 3) / 4,
        bf16=torch.tensor([1.5, -2.25, 3.0], dtype=torch.bfloat16),
        long=torch.arange(-3, 3, dtype=torch.int64),
        bool=torch.tensor([True, False, True]),
        u8=torch.arange(250, 256, dtype=torch.uint8),
        f64=torch.linspace(0, 1, 5, dtype=torch.float64),
        scalar=torch.tensor(3.5),
        empty=torch.zeros(0, 3),
        param=torch.nn.Parameter(torch.ones(2)),
    )
    return {
        "state_dict": sd,
        "epoch": 7,
        "nested": {"list": [torch.tensor([1, 2]), "text"], "tuple": (1.5, None)},
        "numpy": np.arange(3, dtype=np.int32),
        "numpy_scalar": np.float64(2.5),
    }


def main() -> None:
    import torch

    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
    out = os.path.join(out, "torch_zip")
    os.makedirs(out, exist_ok=True)
    obj = checkpoint(torch)
    torch.save(obj, os.path.join(out, "checkpoint.pt"))
    torch.save(obj, os.path.join(out, "legacy.pt"), _use_new_zipfile_serialization=False)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)
            self.register_buffer("buf", torch.arange(4, dtype=torch.float32).reshape(2, 2).t())
            self.stride = 2

        def forward(self, x):
            return self.conv(x) * self.stride

    m = Tiny()
    with torch.no_grad():
        m.conv.weight.copy_(torch.arange(54, dtype=torch.float32).reshape(3, 2, 3, 3) / 10)
        m.conv.bias.copy_(torch.tensor([-1.0, 0.0, 1.0]))
    torch.jit.save(torch.jit.script(m), os.path.join(out, "script.pt"))
    print("wrote", sorted(os.listdir(out)))


if __name__ == "__main__":
    main()
