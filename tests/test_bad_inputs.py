"""Hostile inputs: 30 bad command lines and bad data files.

Each bad command line must end with exit status 2, exactly one line on stderr (no traceback)
and the directory tree of the runs (file names and contents) unchanged. Each command line
runs in a fresh interpreter, two at a time (forking a process that has started JAX's threads
can deadlock the child: it hung a CI run).
"""

import hashlib
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config.model.hidden=16", "--config.model.depth=1", "--config.training.batch_size=16",
        "--config.training.n_jitted_steps=10", "--config.training.log_every=10",
        "--config.training.ckpt_every=10", "--config.training.eval_at_end=False",
        "--config.sampling.num=8", "--config.sampling.steps=5", "--noprogress"]  # fmt: skip


def cli(args: list[str]) -> tuple[int, str]:
    """Runs ``jaxdiff ARGS`` in a fresh interpreter; returns (exit status, stderr)."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    p = subprocess.run([sys.executable, "-m", "jaxdiff", *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    return p.returncode, p.stderr


def tree_hash(root) -> str:
    """Hash of every path (files and folders) under ``root`` and every file's bytes."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        h.update(os.path.relpath(dirpath, root).encode())
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            h.update(name.encode())
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A directory with a trained toy run (``run``), a file, an empty folder and bad data."""
    root = tmp_path_factory.mktemp("runs")
    args = ["train", "--config", "configs/toy/vp.py", "--workdir", str(root / "run"), *TINY,
            "--config.training.num_steps=20"]  # fmt: skip
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    subprocess.run([sys.executable, "-m", "jaxdiff", *args], cwd=ROOT, env=env, check=True,
                   capture_output=True)  # fmt: skip
    (root / "a_file").write_text("not a workdir")
    (root / "empty").mkdir()
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(images / f"{i}.png")
    (images / "5.png").write_bytes(b"this is not a png")
    sized = root / "sized"
    sized.mkdir()
    for i, s in enumerate((8, 8, 9)):
        Image.fromarray(rng.integers(0, 255, (s, s, 3), dtype=np.uint8)).save(sized / f"{i}.png")
    np.savez(root / "points.npz", x=rng.normal(size=(100, 2)).astype(np.float32))
    raw = (root / "points.npz").read_bytes()
    (root / "cut.npz").write_bytes(raw[: len(raw) // 2])
    return root


def bad_command_lines(root) -> list[tuple[list[str], str]]:
    """(arguments, a word the error line must contain): 30 command lines that must fail."""
    run, new = str(root / "run"), str(root / "new")
    train = ["train", "--config", "configs/toy/vp.py", *TINY]
    t_new, t_run = train + ["--workdir", new], train + ["--workdir", run]
    return [
        # unknown keys and flags
        (t_new + ["--config.training.batchsize=8"], "batchsize"),
        (t_new + ["--config.nosuchsection.x=1"], "nosuchsection"),
        (t_new + ["--nosuchflag"], "nosuchflag"),
        (["sample", "--workdir", run, "--solverr=em"], "solverr"),
        # wrong types
        (t_new + ["--config.training.batch_size=abc"], "batch_size"),
        (t_new + ["--config.optim.lr=fast"], "lr"),
        (["sample", "--workdir", run, "--num=many"], "num"),
        (t_new + ["--restore_step=last"], "restore_step"),
        # missing files and folders
        (["train", "--config", "configs/toy/nope.py", "--workdir", new], "nope.py"),
        (
            t_new + ["--config.data.kind=points", f"--config.data.data_dir={root}/none.npz"],
            "none.npz",
        ),  # fmt: skip
        (
            t_new
            + [
                "--config.data.kind=image",
                "--config.data.name=folder",
                f"--config.data.data_dir={root}/empty",
            ],
            "empty",
        ),  # fmt: skip
        (["eval", "--workdir", run, "--fid=10", f"--fid_stats={root}/none.npz"], "image"),
        # bad data files
        (
            t_new + ["--config.data.kind=points", f"--config.data.data_dir={root}/cut.npz"],
            "cut.npz",
        ),  # fmt: skip
        (
            t_new
            + [
                "--config.data.kind=image",
                "--config.data.name=folder",
                f"--config.data.data_dir={root}/images",
            ],
            "5.png",
        ),  # fmt: skip
        (
            t_new
            + [
                "--config.data.kind=image",
                "--config.data.name=folder",
                f"--config.data.data_dir={root}/sized",
            ],
            "2.png",
        ),  # fmt: skip
        # wrong workdirs
        (["sample", "--workdir", str(root / "nowhere")], "nowhere"),
        (["sample", "--workdir", str(root / "empty")], "config.json"),
        (train + ["--workdir", str(root / "a_file")], "a_file"),
        (t_run + ["--config.process.name=subvp"], "process"),
        (train, "--workdir"),
        (["sample", "--workdir", run, "--config", "configs/toy/vp.py"], "--config"),
        # solvers the method cannot use, unknown solvers, wrong solver options
        (["sample", "--workdir", run, "--solver", "sscs"], "sscs"),
        (["sample", "--workdir", run, "--solver", "nope"], "nope"),
        (["sample", "--workdir", run, "--solver", "em", "--rtol", "1e-3"], "rtol"),
        # negative counts
        (t_new + ["--config.training.batch_size=-16"], "batch_size"),
        (t_new + ["--stop_after=-1"], "stop_after"),
        (["sample", "--workdir", run, "--num=-3"], "num"),
        (["sample", "--workdir", run, "--steps=-5"], "steps"),
        (t_run + ["--restore_step=-2"], "restore_step"),
        # a checkpoint that is not there
        (t_run + ["--restore_step=15"], "15"),
    ]


@pytest.mark.slow
def test_thirty_bad_command_lines_fail_cleanly_and_change_nothing(runs):
    cases = bad_command_lines(runs)
    assert len(cases) == 30
    from concurrent.futures import ThreadPoolExecutor

    before = tree_hash(runs)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(cli, [args for args, _ in cases]))
    failures = []
    for (args, word), (code, err) in zip(cases, results, strict=True):
        lines = [x for x in err.splitlines() if x.strip()]
        if not (code == 2 and len(lines) == 1 and "Traceback" not in err and word in err):
            failures.append(f"{' '.join(args[-3:])}: exit {code}, stderr {err[-600:]!r}")
    assert not failures, "\n".join(failures)
    assert tree_hash(runs) == before  # no command line changed a file or folder


# ----------------------------------------------------------------------------------------------
# Bad data files, through the loaders


def test_truncated_image_in_a_folder_is_named_or_skipped(tmp_path):
    from jaxdiff.data.images import BadImageError, folder_data

    rng = np.random.default_rng(1)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    raw = (tmp_path / "3.png").read_bytes()
    (tmp_path / "3.png").write_bytes(raw[: len(raw) // 2])  # header intact, pixels cut
    data = folder_data(tmp_path, flip=False)
    with pytest.raises(BadImageError, match="3.png"):
        data.batch(0, 5)  # the whole first epoch: the bad file is in it
    data = folder_data(tmp_path, flip=False, skip_bad=True)
    assert data.num_examples == 4 and [os.path.basename(f) for f, _ in data.skipped] == ["3.png"]
    # The kept images are the readable files, bit for bit.
    x = np.sort(data.images(0, 4).reshape(4, -1), axis=0)
    want = [np.asarray(Image.open(tmp_path / f"{i}.png")) for i in (0, 1, 2, 4)]
    want = np.sort((np.stack(want).astype(np.float32) / 255 * 2 - 1).reshape(4, -1), axis=0)
    np.testing.assert_array_equal(x, want)


def test_wrong_sized_and_unreadable_images_are_named_or_skipped(tmp_path):
    from jaxdiff.data.images import BadImageError, folder_data

    rng = np.random.default_rng(2)
    for i, s in enumerate((6, 6, 7, 6)):
        Image.fromarray(rng.integers(0, 255, (s, s), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "4.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(BadImageError, match="2.png"):
        folder_data(tmp_path, grayscale=True)
    data = folder_data(tmp_path, grayscale=True, skip_bad=True)
    assert sorted(os.path.basename(f) for f, _ in data.skipped) == ["2.png", "4.jpg"]
    assert data.num_examples == 3 and data.shape == (6, 6, 1)
    # With a resolution every readable file is resized: only the junk file is left out.
    data = folder_data(tmp_path, grayscale=True, resolution=4, skip_bad=True)
    assert [os.path.basename(f) for f, _ in data.skipped] == ["4.jpg"] and data.num_examples == 4


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_npz_names_the_file(tmp_path, compressed):
    from jaxdiff.data.images import npz_data
    from jaxdiff.data.toy import PointData

    rng = np.random.default_rng(3)
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "im.npz", images=rng.integers(0, 255, (50, 8, 8), dtype=np.uint8))
    save(tmp_path / "pts.npz", x=rng.normal(size=(500, 2)).astype(np.float32))
    assert npz_data(tmp_path / "im.npz").num_examples == 50
    for name, load in (("im.npz", npz_data), ("pts.npz", PointData)):
        raw = (tmp_path / name).read_bytes()
        for cut in (len(raw) // 2, len(raw) - 30):
            (tmp_path / name).write_bytes(raw[:cut])
            with pytest.raises(ValueError, match=name):
                load(str(tmp_path / name))
    # A zip member whose data is cut but whose directory is intact.
    with zipfile.ZipFile(tmp_path / "pts.npz", "w") as z:
        z.writestr("x.npy", (tmp_path / "im.npz").read_bytes()[:40])
    with pytest.raises(ValueError, match="pts.npz"):
        PointData(str(tmp_path / "pts.npz"))
