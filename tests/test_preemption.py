"""Preemption-safe training: signals, kill loops, corrupt checkpoints, lost peers, a full disk."""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def files(directory) -> dict[str, bytes]:
    return {
        os.path.relpath(os.path.join(d, f), directory): open(os.path.join(d, f), "rb").read()
        for d, _, fs in os.walk(directory)
        for f in fs
    }


def small_state(k: float) -> dict:
    return {"w": jnp.arange(12.0).reshape(3, 4) * k, "b": jnp.full((5,), k), "n": jnp.int32(k)}


def abstract(state):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        state)  # fmt: skip


def assert_state(got, k):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(small_state(k)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------------------------------
# Restore falls back past unreadable checkpoints; nothing is deleted


def test_restore_falls_back_past_corrupt_and_partial_checkpoints(tmp_path):
    from jaxdiff.train.checkpoint import Checkpointer, CheckpointError

    ckpt = Checkpointer(str(tmp_path), keep=5, use_async=False)
    for k in (1, 2, 3):
        ckpt.save(k, small_state(k), {"step": k})
    ckpt.close()
    # Step 3 corrupt (every file cut to a third), step 2 partial (its array data missing).
    for name, data in files(tmp_path / "3").items():
        (tmp_path / "3" / name).write_bytes(data[: len(data) // 3])
    for name in files(tmp_path / "2"):
        if "/d/" in name or name.startswith("state/d"):
            os.remove(tmp_path / "2" / name)
    before = files(tmp_path)
    warnings = []
    ckpt = Checkpointer(str(tmp_path), keep=5, use_async=False)
    state, meta = ckpt.restore(abstract(small_state(0)), warn=warnings.append)
    assert meta["step"] == 1 and ckpt.restored_step == 1
    assert_state(state, 1)
    assert [s for s, _ in ckpt.skipped] == [3, 2] and len(warnings) == 2
    assert str(tmp_path / "3") in warnings[0] and "nothing is deleted" in warnings[0]
    # An explicit step is restored or refused, never replaced by another one.
    with pytest.raises(CheckpointError, match="3"):
        ckpt.restore(abstract(small_state(0)), step=3)
    with pytest.raises(CheckpointError, match="no checkpoint of step 7"):
        ckpt.restore(abstract(small_state(0)), step=7)
    assert_state(ckpt.restore(abstract(small_state(0)), step=1)[0], 1)
    ckpt.close()
    assert files(tmp_path) == before  # nothing deleted or rewritten
    # Nothing readable: an error that lists the steps.
    for name, data in files(tmp_path / "1").items():
        (tmp_path / "1" / name).write_bytes(data[: len(data) // 3])
    ckpt = Checkpointer(str(tmp_path), keep=5, use_async=False)
    with pytest.raises(CheckpointError, match=r"\[1, 2, 3\], none readable"):
        ckpt.restore(abstract(small_state(0)), warn=lambda m: None)
    ckpt.close()


# ----------------------------------------------------------------------------------------------
# A full disk during a save


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from orbax.checkpoint._src.handlers import json_checkpoint_handler

    from jaxdiff.train import checkpoint
    from jaxdiff.train.checkpoint import Checkpointer, CheckpointWriteError

    ckpt = Checkpointer(str(tmp_path), keep=5)  # async, as in training
    ckpt.save(1, small_state(1), {"step": 1})
    ckpt.wait()

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # The disk fills up while step 2 is written (its arrays are written, its record fails).
    monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", no_space)
    with pytest.raises(CheckpointWriteError, match="disk is full") as info:
        ckpt.save(2, small_state(2), {"step": 2})
        ckpt.wait()
    assert "step 2" in str(info.value) and "earlier checkpoints are intact" in str(info.value)
    monkeypatch.undo()
    try:
        ckpt.close()
    except CheckpointWriteError:
        pass
    fresh = Checkpointer(str(tmp_path), keep=5, use_async=False)
    assert fresh.all_steps() == [1] and fresh.latest_step() == 1
    assert_state(fresh.restore(abstract(small_state(0)))[0], 1)
    # Too little room: refused before anything is written.
    before = sorted(os.listdir(tmp_path))
    usage = checkpoint.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: usage._replace(free=10))
    with pytest.raises(CheckpointWriteError, match="disk is full"):
        fresh.save(3, small_state(3), {"step": 3})
    assert sorted(os.listdir(tmp_path)) == before
    fresh.close()


# ----------------------------------------------------------------------------------------------
# Training over a corrupt latest checkpoint, and --restore_step


def _toy(num_steps):
    from configs.toy import vp

    c = vp.get_config()
    c.model.hidden, c.model.depth = 16, 1
    c.training.update(batch_size=16, n_jitted_steps=10, log_every=10, ckpt_every=10, keep=10,
                      num_steps=num_steps, eval_at_end=False)  # fmt: skip
    c.sampling.update(num=8, steps=5)
    return c


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves((state.params, state.ema, state.opt_state))]


@pytest.mark.slow
def test_training_falls_back_to_a_readable_checkpoint_and_restore_step(tmp_path, capsys):
    from jaxdiff import build
    from jaxdiff.train import loop
    from jaxdiff.train.checkpoint import CheckpointError

    run = build.build_run(_toy(40))
    work = str(tmp_path)

    def train(**kw):
        return loop.train(run.method, run.data, run.train, work, progress=False, **kw)

    ref, _ = train()  # uninterrupted: checkpoints 10, 20, 30, 40
    for step, cut in ((40, 2), (30, 3)):  # the latest two corrupt
        bad = tmp_path / "checkpoints" / str(step)
        for name, data in files(bad).items():
            (bad / name).write_bytes(data[: len(data) // cut])
    kept = {s: files(tmp_path / "checkpoints" / str(s)) for s in (30, 40)}
    capsys.readouterr()
    state, summary = train()
    err = capsys.readouterr().err
    assert "checkpoints/40 cannot be restored" in err and "checkpoints/30 cannot" in err
    for s in (30, 40):  # moved aside, intact
        assert files(tmp_path / "checkpoints.unreadable" / str(s)) == kept[s]
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "restore_fallback" and events[-1]["step"] == 20
    assert summary["step"] == 40 and summary["goodput"]["attempts"] == 2
    for a, b in zip(_leaves(ref), _leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)  # resumed from 20, bit for bit
    # --restore_step: an earlier one; the newer ones are set aside, the result is the same.
    with pytest.raises(CheckpointError, match="no checkpoint of step 25"):
        train(restore_step=25)
    state, _ = train(restore_step=10)
    assert sorted(os.listdir(tmp_path / "checkpoints.superseded")) == ["20", "30", "40"]
    for a, b in zip(_leaves(ref), _leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------
# The kill drill, small: 2 SIGKILLs (one during a checkpoint write) and a SIGTERM


@pytest.mark.slow
def test_kill_drill_three_interruptions_end_bit_identical(tmp_path):
    from experiments import kill_drill

    steps, every = 1500, 100
    ref, run = str(tmp_path / "ref"), str(tmp_path / "run")
    env = kill_drill._env()
    subprocess.run(kill_drill.command(ref, steps, every), cwd=ROOT, env=env, check=True,
                   capture_output=True)  # fmt: skip
    rows = kill_drill.drill(run, kills=2, terms=1, steps=steps, ckpt_every=every, in_write=1,
                            max_delay=0.5, seed=1, log=lambda *a: None)  # fmt: skip
    print(kill_drill.table(rows))
    assert [r["rc"] for r in rows if r["signal"] == "SIGKILL"] == [-9, -9]
    term = [r for r in rows if r["signal"] == "SIGTERM"][0]
    assert term["rc"] == 143 and term["resumed"] >= term["reached"]  # nothing lost on SIGTERM
    assert all(r["resumed"] is not None and r["resumed"] % 10 == 0 for r in rows)
    assert kill_drill.states_equal(ref, run) == []
    with open(os.path.join(run, "goodput.json")) as f:
        record = json.load(f)
    assert record["summary"]["attempts"] == 4 and record["attempts"][-1]["end"] == "finished"
    s = record["summary"]["seconds"]
    assert s["steps"] > 0 and s["compile"] > 0 and s["between_attempts"] > 0


# ----------------------------------------------------------------------------------------------
# Two processes: SIGTERM to one stops both at the same step; a killed one is named by the other


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pair(workdir, steps, extra=()):
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    from experiments import kill_drill

    cmd = kill_drill.command(str(workdir), steps, 100) + [
        f"--coordinator=127.0.0.1:{port}", "--num_processes=2", "--peer_timeout=10", *extra
    ]  # fmt: skip
    return [
        subprocess.Popen(
            cmd + [f"--process_id={i}"],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for i in range(2)
    ]


def _wait_for(path, procs, limit=300):
    deadline = time.time() + limit
    while not os.path.exists(path) and time.time() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.02)
    assert os.path.exists(path)


@pytest.mark.slow
def test_two_processes_sigterm_agree_and_a_lost_peer_is_named(tmp_path):
    from jaxdiff.train import goodput

    work = tmp_path / "multi"
    procs = _pair(work, 100000)
    _wait_for(work / "checkpoints" / "200", procs)
    procs[1].send_signal(signal.SIGTERM)  # only one process is told
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [143, 143], errs
    steps = sorted(int(d) for d in os.listdir(work / "checkpoints") if d.isdigit())
    stopped = steps[-1]
    assert stopped > 200 and all(f"at step {stopped}" in e for e in errs), errs
    # The same command resumes both from that step; then process 1 dies.
    procs = _pair(work, 100000)
    _wait_for(work / "checkpoints" / str(stopped + 200 - stopped % 100), procs)
    assert goodput.load(str(work))["attempts"][1]["first_step"] == stopped
    procs[1].kill()
    t0 = time.time()
    _, err = procs[0].communicate(timeout=120)
    waited = time.time() - t0
    assert procs[0].returncode == 3 and waited < 10 + 10, (procs[0].returncode, waited, err)
    assert "LostPeerError: process 1 of 2" in err and "Traceback" not in err
    procs[1].wait()
    # The restarted job resumes from the last checkpoint both wrote.
    last = max(int(d) for d in os.listdir(work / "checkpoints") if d.isdigit())
    procs = _pair(work, 100000, ["--stop_after=10"])
    assert [p.communicate(timeout=300) and p.returncode for p in procs] == [0, 0]
    assert goodput.load(str(work))["attempts"][2]["first_step"] == last


# ----------------------------------------------------------------------------------------------
# The pieces: signal flag, goodput accounting


def test_stop_signals_set_a_flag_and_restore_the_handlers():
    from jaxdiff.train import preemption

    before = signal.getsignal(signal.SIGTERM)
    with preemption.StopSignals() as stop:
        assert stop.signum is None
        os.kill(os.getpid(), signal.SIGTERM)  # would end the test process without the handler
        time.sleep(0.01)
        assert stop.signum == signal.SIGTERM
        assert preemption.agree_stop(stop.signum) == signal.SIGTERM  # one process: its own
        os.kill(os.getpid(), signal.SIGTERM)  # a repeated SIGTERM changes nothing
        time.sleep(0.01)
        with pytest.raises(KeyboardInterrupt):  # a SIGINT after it: the user insists
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
    assert stop.signum == signal.SIGTERM and signal.getsignal(signal.SIGTERM) is before
    assert preemption.exit_code(signal.SIGTERM) == 143
    assert preemption.exit_code(signal.SIGINT) == 130


def test_goodput_moves_uncheckpointed_work_of_a_killed_attempt_to_lost(tmp_path):
    from jaxdiff.train import goodput

    gp = goodput.Goodput(str(tmp_path), min_interval_s=0)
    gp.resumed(None)
    with gp.time("steps", uncommitted=True):
        time.sleep(0.02)
    gp.checkpointed(100)  # the first 0.02 s are safe
    with gp.time("steps", uncommitted=True):
        time.sleep(0.03)
    gp.stepped(150)  # ... then the process is killed at step 150: no finish()
    first = json.loads((tmp_path / "goodput.json").read_text())["attempts"][0]
    done = first["seconds"]["steps"]
    assert done >= 0.05 and first["uncommitted"]["steps"] >= 0.03
    time.sleep(0.05)
    again = goodput.Goodput(str(tmp_path), min_interval_s=0)
    again.resumed(100)
    s = again.finish("finished")
    lost = again.attempts[0]["seconds"]["lost_to_interruptions"]
    assert lost == first["uncommitted"]["steps"]  # moved, not copied
    assert s["seconds"]["steps"] == pytest.approx(done - lost, abs=1e-9)
    assert s["seconds"]["between_attempts"] >= 0.05
    assert s["goodput"] == pytest.approx(s["seconds"]["steps"] / s["total_s"])
    table = goodput.format_summary(s)
    assert "lost_to_interruptions" in table and "2 attempt(s)" in table
