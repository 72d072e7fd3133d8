"""Command line: ``jaxdiff train | sample | eval`` (also ``python -m jaxdiff``).

    jaxdiff train --config configs/toy/vp.py --workdir runs/vp [--config.training.batch_size=256]
    jaxdiff sample --workdir runs/vp [--solver ode_tsit5 --steps 1000 --num 2000 --seed 0 --out F]
    jaxdiff eval --workdir runs/vp

The config is an ml_collections file with ``get_config()``, locked: a misspelled override or a
value of the wrong type fails at once. ``train`` stores the resolved config in the workdir, so
``sample`` and ``eval`` need no ``--config``; re-running ``train`` resumes.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

COMMANDS = ("train", "sample", "eval")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "experiment config file", lock_config=True
)
flags.DEFINE_string("workdir", None, "run directory (checkpoints, samples, metrics)")
flags.DEFINE_string(
    "solver",
    None,
    "sampler name (em, sde_heun, pc, ode_euler, ode_heun, "
    "ode_tsit5, ode_dopri5, sscs, ...); default: the config's",
)
flags.DEFINE_integer("steps", None, "sampler steps (fixed grids); default: the config's")
flags.DEFINE_integer("num", None, "number of samples; default: config.sampling.num")
flags.DEFINE_integer("seed", 0, "sampling / evaluation seed")
flags.DEFINE_string("out", None, "output .npz path for `sample` (a .png is written beside it)")
flags.DEFINE_float("rtol", None, "adaptive ODE tolerance (rtol = atol) for `sample`")
flags.DEFINE_string("grid", None, "time grid: uniform or quadratic")
flags.DEFINE_integer("stop_after", None, "train: stop after this many more steps")
flags.DEFINE_string("coordinator", None, "multi-host: coordinator host:port")
flags.DEFINE_integer("num_processes", None, "multi-host: number of processes")
flags.DEFINE_integer("process_id", None, "multi-host: index of this process")
flags.DEFINE_bool("progress", True, "show a progress bar")

FLAGS = flags.FLAGS


def _main(command: str) -> None:
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax logs every file it touches at INFO
    from jaxdiff.train import loop, parallel

    parallel.maybe_initialize_distributed(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required")
    workdir = FLAGS.workdir
    if command == "train":
        config = _CONFIG.value
        if config is None:
            raise app.UsageError("train needs --config CONFIG_FILE")
        t0 = time.time()
        state, summary = loop.train(
            config, workdir, progress=FLAGS.progress, stop_after=FLAGS.stop_after
        )
        print(f"trained to step {summary['step']} in {time.time() - t0:.1f} s; workdir {workdir}")
        if summary["step"] >= config.training.num_steps:
            _, method, state, data = loop.restore(workdir)
            info = loop.write_samples(method, state, config, workdir, tag="samples")
            _print_sample_info(info)
            if config.training.eval_at_end:
                _write_eval(loop.evaluate(method, state, config, data), workdir)
        return
    if _CONFIG.value is not None:
        raise app.UsageError(f"{command} reads the config stored in --workdir; drop --config")
    config, method, state, data = loop.restore(workdir)
    if command == "sample":
        overrides = {"steps": FLAGS.steps, "grid": FLAGS.grid}
        if FLAGS.rtol is not None:
            overrides.update(rtol=FLAGS.rtol, atol=FLAGS.rtol)
        tag = f"samples_{FLAGS.solver or config.sampling.get('sampler', 'default')}"
        info = loop.write_samples(
            method,
            state,
            config,
            workdir,
            tag=tag,
            num=FLAGS.num,
            seed=FLAGS.seed,
            out=FLAGS.out,
            sampler=FLAGS.solver,
            **overrides,
        )
        _print_sample_info(info)
    else:
        _write_eval(loop.evaluate(method, state, config, data, seed=FLAGS.seed), workdir)


def _known_errors() -> tuple[type[BaseException], ...]:
    from jaxdiff.data.images import MissingDatasetError
    from jaxdiff.train.checkpoint import CheckpointError
    from jaxdiff.train.loop import NaNLossError, WorkdirError

    return (MissingDatasetError, CheckpointError, NaNLossError, WorkdirError, ValueError)


def _guarded(command: str) -> None:
    """Runs a command; a known user error becomes one clear line and exit status 1."""
    try:
        _main(command)
    except _known_errors() as e:
        print(f"jaxdiff {command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


def _print_sample_info(info: dict) -> None:
    print(
        f"{info['num']} samples, NFE {info.get('nfe')}, {info['seconds']:.2f} s "
        f"(compile included) -> {info.get('npz')}, {info.get('png')}"
    )


def _write_eval(metrics: dict, workdir: str) -> None:
    text = json.dumps(metrics, indent=2, sort_keys=True)
    print(text)
    with open(os.path.join(workdir, "eval.json"), "w") as f:
        f.write(text + "\n")


def _config_root(argv: list[str]) -> None:
    """Puts the folder holding ``configs/`` on sys.path, so config files can import
    ``configs.base`` from any working directory."""
    for i, arg in enumerate(argv):
        path = None
        if arg.startswith("--config=") and "." not in arg.split("=", 1)[0][len("--config") :]:
            path = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        if path:
            parent = os.path.dirname(os.path.abspath(path.split(":", 1)[0]))
            while parent != os.path.dirname(parent):
                if os.path.basename(parent) == "configs":
                    sys.path.insert(0, os.path.dirname(parent))
                    return
                parent = os.path.dirname(parent)


def run() -> None:
    """Console-script entry point: the first argument is the command."""
    argv = sys.argv
    _config_root(argv)
    if len(argv) < 2 or argv[1] not in COMMANDS:
        print(__doc__)
        print(f"usage: jaxdiff {{{'|'.join(COMMANDS)}}} [flags]   (--helpfull for all flags)")
        sys.exit(2)
    command = argv[1]
    app.run(lambda _: _guarded(command), argv=[argv[0]] + argv[2:])


if __name__ == "__main__":
    run()
