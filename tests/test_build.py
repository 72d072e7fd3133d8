"""Config -> objects: every key of every config in configs/ is read by jaxdiff.build, the workdir
identity covers the sections that define a model, and the user's own points train."""

from __future__ import annotations

import importlib
import pathlib

import ml_collections
import numpy as np
import pytest

from jaxdiff import build
from jaxdiff.data.images import MissingDatasetError

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = sorted(
    str(p.relative_to(ROOT).with_suffix("")).replace("/", ".")
    for p in (ROOT / "configs").rglob("*.py")
    if p.name not in ("__init__.py", "base.py", "common.py")
)
# one example's shape for the data sets that cannot be read offline
SHAPES = {"cifar10": (32, 32, 3), "celeba_hq_256": (256, 256, 3), "mnist": (32, 32, 1),
          "lsun_church": (256, 256, 3),
          "lsun_bedroom": (256, 256, 3)}  # fmt: skip


class Tracked:
    """A read-only view of a ConfigDict that records the paths of the keys read."""

    def __init__(self, cfg: ml_collections.ConfigDict, seen: set[str], path: str = ""):
        object.__setattr__(self, "_cfg", cfg)
        object.__setattr__(self, "_seen", seen)
        object.__setattr__(self, "_path", path)

    def _wrap(self, key: str, value):
        full = f"{self._path}{key}"
        self._seen.add(full)
        if isinstance(value, ml_collections.ConfigDict):
            return Tracked(value, self._seen, full + ".")
        return value

    def __getattr__(self, key):
        if key not in self._cfg:
            raise AttributeError(key)
        return self._wrap(key, self._cfg[key])

    __getitem__ = __getattr__

    def get(self, key, default=None):
        return self._wrap(key, self._cfg[key]) if key in self._cfg else default

    def keys(self):
        return self._cfg.keys()

    def __contains__(self, key):
        return key in self._cfg


def _leaves(cfg: ml_collections.ConfigDict, path: str = "") -> set[str]:
    out = set()
    for k in cfg.keys():
        v = cfg[k]
        if isinstance(v, ml_collections.ConfigDict):
            out |= _leaves(v, f"{path}{k}.")
        else:
            out.add(f"{path}{k}")
    return out


def _shape(config) -> tuple[int, ...]:
    try:
        return tuple(build.build_data(config).shape)
    except MissingDatasetError:
        if config.data.name == "folder":  # the user's images, resized to image_size
            return (config.data.image_size, config.data.image_size, 3)
        return SHAPES[config.data.name]


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_key_is_read(name):
    config = importlib.import_module(name).get_config()
    seen: set[str] = set()
    tracked = Tracked(config, seen)
    shape = _shape(config)
    try:
        build.build_data(tracked)
    except MissingDatasetError:
        pass
    build.build_method(tracked, data_shape=shape)
    build.build_train_settings(tracked)
    build.build_eval_settings(tracked)
    tracked.sampling.num  # noqa: B018 (read by build_run)
    tracked.training.eval_at_end  # noqa: B018
    unread = sorted(_leaves(config) - seen)
    assert not unread, f"{name}: config keys nothing reads: {unread}"


def test_the_tracker_finds_an_unread_key():
    from configs.toy.vp import get_config

    config = get_config()
    config.model.not_an_option = 3
    with pytest.raises(build.ConfigError, match="not_an_option"):
        build.build_method(config, data_shape=(2,))
    config = get_config()
    config.eval.unused = 1
    seen: set[str] = set()
    build.build_method(Tracked(config, seen), data_shape=(2,))
    assert "eval.unused" not in seen and "eval.num_samples" in seen


def test_identity_sections_cover_every_model_defining_section(tmp_path):
    """A workdir refuses a config whose networks differ, for every method's network section."""
    from jaxdiff import api

    assert {"model", "process", "objective", "data", "ddgan", "lsgm"} <= set(
        build.IDENTITY_SECTIONS
    )
    from configs.toy.lsgm import get_config

    config = get_config()
    api.store_config(config, str(tmp_path))
    config.lsgm.vae.hidden = 7
    with pytest.raises(api.WorkdirError, match="lsgm"):
        api.check_workdir(config, str(tmp_path))


def test_workdir_accepts_keys_added_since_at_their_defaults(tmp_path):
    """A run stored before a key existed resumes when the key keeps the value the build uses for
    an absent key; any other value, or a changed key, names the dotted key."""
    from configs.toy.lsgm import get_config
    from jaxdiff import api

    config = get_config()
    api.store_config(config, str(tmp_path))
    assert "nll_prior" not in config.lsgm and "diffusion_steps" not in config.lsgm
    config.lsgm.nll_prior = "ode"  # as a config written after the keys were added
    config.lsgm.diffusion_steps = 1000
    api.check_workdir(config, str(tmp_path))  # both at their defaults: the same run
    config.lsgm.diffusion_steps = 100
    with pytest.raises(api.WorkdirError, match=r"\+lsgm\.diffusion_steps") as e:
        api.check_workdir(config, str(tmp_path))
    assert "nll_prior" not in str(e.value)
    config = get_config()
    config.lsgm.vae.hidden = 7
    with pytest.raises(api.WorkdirError, match=r"'lsgm\.vae\.hidden'"):
        api.check_workdir(config, str(tmp_path))


def test_points_from_an_npz_are_seeded_batches(tmp_path):
    from configs.toy.vp import get_config

    pts = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    np.savez(tmp_path / "p.npz", x=pts)
    config = get_config()
    config.data.kind = "points"
    config.data.data_dir = str(tmp_path / "p.npz")
    data = build.build_data(config)
    assert data.shape == (3,)
    b0, b0_again, b1 = data.batch(0, 64)["x"], data.batch(0, 64)["x"], data.batch(1, 64)["x"]
    np.testing.assert_array_equal(b0, b0_again)
    assert not np.array_equal(b0, b1)
    assert all(any(np.array_equal(r, p) for p in pts) for r in b0[:5])  # rows of the file
    half = data.batch(0, 64, process_index=1, process_count=2)["x"]
    np.testing.assert_array_equal(half, b0[32:])
    method = build.build_method(config, data_shape=data.shape)
    assert method.data_shape == (3,)
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 2, 2)))
    config.data.data_dir = str(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        build.build_data(config)
    (tmp_path / "trunc.npz").write_bytes((tmp_path / "p.npz").read_bytes()[:100])
    config.data.data_dir = str(tmp_path / "trunc.npz")
    with pytest.raises(ValueError, match="cannot read"):
        build.build_data(config)
