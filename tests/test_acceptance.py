"""The README's quick start, as a new user runs it: the full toy VP config through the CLI."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_toy_vp_quick_start_meets_the_acceptance_thresholds(tmp_path):
    work = tmp_path / "vp"
    cmd = [sys.executable, "-m", "jaxdiff", "train", "--config", "configs/toy/vp.py",
           "--workdir", str(work), "--noprogress"]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=900)
    assert (work / "samples" / "samples.png").exists()
    assert (work / "checkpoints" / "4000").exists()
    metrics = json.loads((work / "eval.json").read_text())
    assert metrics["modes_covered"] >= 24
    assert metrics["high_quality_frac"] >= 0.8
    # Two more solvers from the README work on the trained model.
    for args in (["--solver", "ode_tsit5"], ["--solver", "em", "--steps", "1000"]):
        sample = [sys.executable, "-m", "jaxdiff", "sample", "--workdir", str(work), "--num", "500"]
        res = subprocess.run(
            sample + args,
            cwd=ROOT, check=True, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert "NFE" in res.stdout


@pytest.mark.slow
def test_toy_lsgm_quick_start_meets_the_acceptance_thresholds(tmp_path):
    """README: LSGM on the toy (stage 1 then stage 2, latent PF-ODE then the decoder mean)."""
    work = tmp_path / "lsgm"
    cmd = [sys.executable, "-m", "jaxdiff", "train", "--config", "configs/toy/lsgm.py",
           "--workdir", str(work), "--noprogress"]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=900)
    metrics = json.loads((work / "eval.json").read_text())
    # docs/lsgm.md: 25 / 25 modes, >= 80 % within 3 std of a centre, SW <= 1.5 x its noise floor
    assert metrics["modes_covered"] == 25
    assert metrics["high_quality_frac"] >= 0.8
    assert metrics["sw_ratio"] <= 1.5
    sample = [sys.executable, "-m", "jaxdiff", "sample", "--workdir", str(work), "--num", "500"]
    res = subprocess.run(sample, cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
    assert "NFE" in res.stdout
