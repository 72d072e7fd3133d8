"""The experiment runner through its CLI: sharding, multi-process, kill/resume, bad inputs."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--config.model.hidden=32",
    "--config.model.depth=1",
    "--config.training.batch_size=64",
    "--config.training.n_jitted_steps=10",
    "--config.training.log_every=20",
    "--config.training.ckpt_every=100",
    "--config.training.eval_at_end=False",
    "--config.eval.num_samples=500",  # `jaxdiff eval` on these runs: keys, not thresholds
    "--config.eval.likelihood_examples=50",
    "--config.sampling.num=64",
    "--config.sampling.steps=20",
    "--noprogress",
]


def jaxdiff(args, devices=1, env=None, check=True, timeout=600):
    e = dict(os.environ)
    e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    e.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "jaxdiff", *args],
        cwd=ROOT,
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"jaxdiff {args} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc


def one_line(res) -> bool:
    """The error is one line on stderr, with no traceback."""
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    return len(lines) == 1 and "Traceback" not in res.stderr


def train_args(workdir, steps=200, extra=()):
    return ["train", "--config", "configs/toy/vp.py", "--workdir", str(workdir), *TINY,
            f"--config.training.num_steps={steps}", *extra]  # fmt: skip


def losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return np.array([r["loss"] for r in rows]), [r["step"] for r in rows]


def final_params(workdir):
    from jaxdiff.api import restore

    _, _, state, _ = restore(str(workdir))
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(state.params)]


@pytest.mark.slow
def test_one_and_eight_devices_give_the_same_loss_curve(tmp_path):
    jaxdiff(train_args(tmp_path / "d1"), devices=1)
    jaxdiff(train_args(tmp_path / "d8"), devices=8)
    l1, s1 = losses(tmp_path / "d1")
    l8, s8 = losses(tmp_path / "d8")
    assert s1 == s8 and len(s1) == 10
    # Same global batch and keys; only the order of the cross-device gradient sum differs.
    np.testing.assert_allclose(l1, l8, rtol=1e-4)
    for a, b in zip(final_params(tmp_path / "d1"), final_params(tmp_path / "d8"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path):
    jaxdiff(train_args(tmp_path / "single"), devices=2)
    port = _free_port()
    procs = []
    for pid in range(2):
        e = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
        args = train_args(tmp_path / "multi") + [
            f"--coordinator=127.0.0.1:{port}", "--num_processes=2", f"--process_id={pid}",
        ]  # fmt: skip
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "jaxdiff", *args],
                cwd=ROOT,
                env=e,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    l1, s1 = losses(tmp_path / "single")
    l2, s2 = losses(tmp_path / "multi")
    assert s1 == s2
    np.testing.assert_allclose(l1, l2, rtol=1e-4)


@pytest.mark.slow
def test_killed_run_resumes_to_identical_parameters(tmp_path):
    steps = 1500
    jaxdiff(train_args(tmp_path / "full", steps))
    work = tmp_path / "killed"
    e = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    p = subprocess.Popen(
        [sys.executable, "-m", "jaxdiff", *train_args(work, steps)],
        cwd=ROOT, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ckpt = work / "checkpoints" / "300"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert ckpt.exists(), "the run never reached its step-300 checkpoint"
    done = sorted(int(d) for d in os.listdir(work / "checkpoints") if d.isdigit())
    assert done[-1] < steps, f"the run finished before it was killed: {done}"
    jaxdiff(train_args(work, steps))  # the same command resumes
    # XLA on the CPU is deterministic for a fixed device count: bit-for-bit equal.
    for a, b in zip(final_params(tmp_path / "full"), final_params(work), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_cli_end_to_end_train_sample_eval(tmp_path):
    work = tmp_path / "run"
    out = jaxdiff(train_args(work, 200))
    assert "trained to step 200" in out.stdout
    assert (work / "samples" / "samples.png").exists()
    assert (work / "config.json").exists()
    for solver, steps in (("ode_tsit5", None), ("em", 30), ("pc", 10), ("ode_heun", 10)):
        extra = ["--solver", solver, "--num", "32"] + (["--steps", str(steps)] if steps else [])
        res = jaxdiff(["sample", "--workdir", str(work), *extra])
        assert "NFE" in res.stdout
        npz = np.load(work / "samples" / f"samples_{solver}.npz")
        assert npz["samples"].shape == (32, 2) and np.isfinite(npz["samples"]).all()
        if steps and solver == "em":
            assert int(npz["nfe"]) == steps + 1  # grid steps + the final denoising step
    res = jaxdiff(["eval", "--workdir", str(work)])
    metrics = json.loads(res.stdout[res.stdout.index("{") :])
    assert {"sw", "sw_floor", "modes_covered", "high_quality_frac", "nll"} <= set(metrics)
    assert (work / "eval.json").exists()


@pytest.mark.slow
def test_bad_inputs_fail_clearly_and_change_nothing(tmp_path):
    work = tmp_path / "run"
    # Unknown key and wrong type: refused before anything is written.
    res = jaxdiff(train_args(work, 100, ["--config.training.batchsize=8"]), check=False)
    assert res.returncode == 2 and "batchsize" in res.stderr and not work.exists()
    assert one_line(res)
    res = jaxdiff(train_args(work, 100, ["--config.training.batch_size=abc"]), check=False)
    assert res.returncode == 2 and "batch_size" in res.stderr and not work.exists()
    assert one_line(res)
    # Missing dataset: the error says how to prepare it.
    empty = tmp_path / "empty"
    empty.mkdir()
    res = jaxdiff(
        train_args(tmp_path / "img", 10, ["--config.data.kind=image", "--config.data.name=cifar10",
                                          f"--config.data.data_dir={empty}"]),
        check=False,
    )  # fmt: skip
    assert res.returncode == 2 and "tfds build" in res.stderr
    # A run, then a config of another process in the same workdir.
    jaxdiff(train_args(work, 100))
    before = sorted(os.listdir(work / "checkpoints"))
    res = jaxdiff(train_args(work, 200, ["--config.process.name=subvp"]), check=False)
    assert res.returncode == 2 and "WorkdirError" in res.stderr and "process" in res.stderr
    assert sorted(os.listdir(work / "checkpoints")) == before
    # Samplers the run cannot use, and unknown ones: one line each, exit 2, nothing written.
    files = sorted(str(p) for p in work.rglob("*"))
    for args, words in (
        (["--solver", "sscs"], ("sscs", "VP", "exact_linear_flow")),
        (["--solver", "nope"], ("nope", "known")),
        (["--solver", "em", "--rtol", "1e-3"], ("em", "rtol")),
    ):
        res = jaxdiff(["sample", "--workdir", str(work), *args], check=False)
        assert res.returncode == 2 and one_line(res), res.stderr
        assert all(w in res.stderr for w in words), res.stderr
    res = jaxdiff(["sample", "--workdir", "/nonexistent/run"], check=False)
    assert res.returncode == 2 and one_line(res) and "/nonexistent/run" in res.stderr
    assert not os.path.exists("/nonexistent")
    assert sorted(str(p) for p in work.rglob("*")) == files
    # A corrupt checkpoint: a clear error, and the files are left as they were.
    step_dir = work / "checkpoints" / "100"
    victims = [p for p in step_dir.rglob("*") if p.is_file() and p.stat().st_size > 1000]
    assert victims
    for v in victims:
        v.write_bytes(v.read_bytes()[: v.stat().st_size // 3])
    snapshot = {p: p.read_bytes() for p in step_dir.rglob("*") if p.is_file()}
    res = jaxdiff(["sample", "--workdir", str(work)], check=False)
    assert res.returncode == 2 and "CheckpointError" in res.stderr and "100" in res.stderr
    res = jaxdiff(train_args(work, 200), check=False)
    assert res.returncode == 2 and "CheckpointError" in res.stderr
    assert {p: p.read_bytes() for p in step_dir.rglob("*") if p.is_file()} == snapshot
    # A workdir with no run.
    res = jaxdiff(["sample", "--workdir", str(tmp_path / "nothing")], check=False)
    assert res.returncode == 2 and "does not exist" in res.stderr and one_line(res)


@pytest.mark.slow
def test_nan_loss_stops_with_step_and_checkpoint(tmp_path):
    work = tmp_path / "nan"
    args = train_args(work, 300, ["--config.optim.lr=1e9", "--config.optim.grad_clip=0.0",
                                  "--config.optim.warmup=0"])  # fmt: skip
    res = jaxdiff(args, check=False)
    assert res.returncode == 2 and "NaNLossError" in res.stderr
    assert "at step" in res.stderr and ("checkpoint" in res.stderr)
    shutil.rmtree(work)


@pytest.mark.slow
def test_bf16_compute_and_gradient_accumulation_train(tmp_path):
    work = tmp_path / "bf16"
    extra = ["--config.training.precision=bfloat16", "--config.training.grad_accum=2"]
    jaxdiff(train_args(work, 100, extra))
    loss, _ = losses(work)
    assert np.all(np.isfinite(loss)) and loss[-1] < loss[0]
    import jax

    # Parameters and EMA stay float32 under bf16 compute.
    dtypes = {x.dtype for x in jax.tree.leaves(final_params(work))}
    assert dtypes == {np.dtype("float32")}


@pytest.mark.slow
def test_image_score_model_trains_samples_and_evaluates(tmp_path):
    """The image path end to end: offline digits, a tiny NCSN++, train / resume / sample / eval."""
    work = tmp_path / "digits"
    args = ["train", "--config", "configs/vp/digits.py", "--workdir", str(work), "--noprogress",
            "--config.model.nf=8", "--config.training.batch_size=16",
            "--config.training.num_steps=20", "--config.training.ckpt_every=10",
            "--config.sampling.num=4", "--config.eval.likelihood_examples=4",
            "--config.sampling.rtol=0.1", "--config.sampling.atol=0.1"]  # fmt: skip
    jaxdiff(args + ["--stop_after=10"])
    jaxdiff(args)  # resumes from step 10
    assert sorted(int(d) for d in os.listdir(work / "checkpoints") if d.isdigit()) == [10, 20]
    assert (work / "samples" / "samples.png").exists()
    metrics = json.loads((work / "eval.json").read_text())
    # bits/dim of 4 held-out test digits, dequantised (a barely trained model: far above 8)
    assert np.isfinite(metrics["test_bpd"]) and metrics["test_bpd"] > 0
    assert metrics["test_examples"] == 4 and metrics["test_split"] == "test"
    res = jaxdiff(
        ["sample", "--workdir", str(work), "--solver", "em", "--steps", "3", "--num", "2"]
    )
    assert "NFE 4" in res.stdout
