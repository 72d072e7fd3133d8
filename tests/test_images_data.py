"""Image data: value ranges, the (seed, step) contract, per-process slices, tfds via mock_data."""

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxdiff.data.images import (
    IMAGE_DATA_NAMES,
    ImageData,
    MissingDatasetError,
    build_image_data,
)
from jaxdiff.eval.plots import image_grid, save_image_grid


def _id_images(n: int, size: int = 4) -> np.ndarray:
    """uint8 NHW images whose pixels encode the example id; the left column marks the left."""
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None] * 10 + 5, size, 1)
    images = np.repeat(images, size, 2)
    images[:, :, 0] = 0
    return images


def _ids(batch: np.ndarray) -> np.ndarray:
    """Recover example ids from a batch in [-1, 1] built from :func:`_id_images`."""
    pixels = np.round((batch["x"] + 1) * 127.5).astype(int)
    return (pixels[:, 0, 1, 0] - 5) // 10


@pytest.fixture
def npz_path(tmp_path):
    path = tmp_path / "ids.npz"
    np.savez(path, images=_id_images(12))
    return path


def test_digits_range_and_levels():
    data = build_image_data("digits")
    assert data.shape == (8, 8, 1) and data.num_examples == 1797
    b = data.batch(0, 64)["x"]
    assert b.shape == (64, 8, 8, 1) and b.dtype == np.float32
    assert b.min() == -1.0 and b.max() == 1.0
    # 16 grey levels (0..16): x = k / 16 * 2 - 1.
    np.testing.assert_allclose((b + 1) * 8, np.round((b + 1) * 8), atol=1e-5)
    big = build_image_data("digits", resolution=32).batch(0, 8)["x"]
    assert big.shape == (8, 32, 32, 1) and -1 <= big.min() and big.max() <= 1


def test_mnist_offline_padding():
    data = build_image_data("mnist_offline", pad=2)
    assert data.shape == (32, 32, 1) and data.num_examples == 5000
    b = data.batch(3, 16)["x"]
    assert np.all(b[:, :2] == -1) and np.all(b[:, :, -2:] == -1)  # zero padding -> -1
    assert b.max() == 1.0


def test_npz_roundtrip_and_keys(tmp_path, npz_path):
    data = build_image_data("npz", path=npz_path, flip=False)
    assert data.shape == (4, 4, 1) and data.num_examples == 12
    b = data.batch(0, 12)["x"]
    expected = _id_images(12)[data.example_indices(0, 12)][..., None] / 127.5 - 1
    np.testing.assert_allclose(b, expected, atol=1e-6)
    np.savez(tmp_path / "bad.npz", y=_id_images(3))
    with pytest.raises(KeyError):
        build_image_data("npz", path=tmp_path / "bad.npz")


def test_batch_is_pure_function_of_seed_and_step():
    data = ImageData(_id_images(12)[..., None] / 255.0, seed=3, flip=True, binarize=True)
    again = ImageData(_id_images(12)[..., None] / 255.0, seed=3, flip=True, binarize=True)
    for step in (0, 5, 1000):  # a fresh object at step k = a resumed run
        np.testing.assert_array_equal(data.batch(step, 8)["x"], again.batch(step, 8)["x"])
    other = ImageData(_id_images(12)[..., None] / 255.0, seed=4, flip=True, binarize=True)
    assert not np.array_equal(data.batch(5, 8)["x"], other.batch(5, 8)["x"])
    assert not np.array_equal(data.batch(5, 8)["x"], data.batch(6, 8)["x"])


def test_each_example_once_per_epoch(npz_path):
    data = build_image_data("npz", path=npz_path, seed=1, flip=False)
    # Batches of 8 over 12 examples straddle epochs; 9 batches = 6 epochs of the stream.
    ids = np.concatenate([_ids(data.batch(s, 8)) for s in range(9)])
    np.testing.assert_array_equal(
        ids, np.concatenate([data.example_indices(s, 8) for s in range(9)])
    )
    epochs = ids.reshape(6, 12)
    for e in epochs:
        assert sorted(e) == list(range(12))
    assert len({tuple(e) for e in epochs}) == 6  # a new permutation every epoch


@pytest.mark.parametrize("count", [2, 4])
def test_process_slices_concatenate_to_global_batch(count):
    images = np.random.default_rng(0).uniform(size=(40, 6, 6, 3)).astype(np.float32)
    data = ImageData(images, seed=7, flip=True, binarize=True)
    full = data.batch(3, 16)["x"]
    parts = [data.batch(3, 16, process_index=i, process_count=count)["x"] for i in range(count)]
    assert all(p.shape == (16 // count, 6, 6, 3) for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), full)


def test_flips_and_dynamic_binarisation():
    images = np.zeros((6, 5, 5, 1), np.float32)
    images[:, :, 0] = 1.0  # bright left column
    data = ImageData(images, seed=0, flip=True)
    b = np.concatenate([data.batch(s, 6)["x"] for s in range(20)])
    left, right = b[:, :, 0, 0] == 1, b[:, :, -1, 0] == 1
    assert np.all(left.all(1) ^ right.all(1))  # each image is the original or its mirror
    assert 0.35 < right.all(1).mean() < 0.65  # 120 fair coin flips

    grey = np.full((4, 8, 8, 1), 0.3, np.float32)
    data = ImageData(grey, seed=0, binarize=True)
    b = np.concatenate([data.batch(s, 4)["x"] for s in range(50)])
    assert set(np.unique(b)) == {-1.0, 1.0}
    # P(pixel on) = intensity 0.3; 12800 pixels give sd 0.004.
    assert abs((b == 1).mean() - 0.3) < 0.02


def test_folder_source(tmp_path):
    rng = np.random.default_rng(0)
    for i, size in enumerate([(10, 12), (12, 10), (12, 12)]):
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
    data = build_image_data("folder", path=tmp_path, resolution=8, flip=False)
    assert data.shape == (8, 8, 3) and data.num_examples == 3
    b = data.batch(0, 3)["x"]
    assert b.shape == (3, 8, 8, 3) and -1 <= b.min() and b.max() <= 1
    # At full size the pixels come back exactly.
    raw = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    (tmp_path / "same").mkdir()
    Image.fromarray(raw).save(tmp_path / "same" / "a.png")
    one = build_image_data("folder", path=tmp_path / "same", flip=False).batch(0, 1)["x"][0]
    np.testing.assert_allclose(one, raw / 127.5 - 1, atol=1e-6)


@pytest.mark.parametrize(
    "name, kwargs, shape",
    [
        ("cifar10", {}, (32, 32, 3)),
        ("mnist", {}, (28, 28, 1)),
        ("mnist", {"pad": 2}, (32, 32, 1)),
        ("celeba_hq_256", {}, (256, 256, 3)),
        ("lsun_church", {"resolution": 64}, (64, 64, 3)),  # variable-size JPEGs, crop + resize
    ],
)
def test_tfds_sources_with_mock_data(name, kwargs, shape):
    with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
        data = build_image_data(name, seed=2, **kwargs)
        assert data.shape == shape and data.num_examples == 20
        b = data.batch(1, 8)["x"]
        assert b.shape == (8,) + shape and b.dtype == np.float32
        assert -1 <= b.min() < 0 < b.max() <= 1
        np.testing.assert_array_equal(b, build_image_data(name, seed=2, **kwargs).batch(1, 8)["x"])
        half = build_image_data(name, seed=2, **kwargs).batch(
            1, 8, process_index=1, process_count=2
        )
        np.testing.assert_array_equal(half["x"], b[4:])


def test_missing_tfds_dataset_says_how_to_prepare(tmp_path):
    with pytest.raises(MissingDatasetError, match="tfds build") as err:
        build_image_data("cifar10", data_dir=str(tmp_path))
    assert "--file_format=array_record" in str(err.value) and str(tmp_path) in str(err.value)


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match="celeba_hq_256"):
        build_image_data("imagenet")
    assert set(IMAGE_DATA_NAMES) == {
        "digits",
        "mnist_offline",
        "npz",
        "folder",
        "cifar10",
        "mnist",
        "celeba_hq_256",
        "lsun_church",
        "lsun_bedroom",
    }


def test_image_grid_layout(tmp_path):
    images = np.stack([np.full((3, 4, 1), v, np.float32) for v in (-1.0, 0.0, 1.0, 1.0, -1.0)])
    grid = image_grid(images, nrow=3, padding=1)
    assert grid.shape == (2 * 4 + 1, 3 * 5 + 1, 1) and grid.dtype == np.uint8
    assert grid[1, 1, 0] == 0 and grid[1, 6, 0] == 128 and grid[5, 1, 0] == 255
    assert grid[0].min() == 255  # padding is white
    assert grid[5:8, 11:15].min() == 255  # the unused sixth cell stays blank
    save_image_grid(tmp_path / "g.png", images, nrow=3)
    with Image.open(tmp_path / "g.png") as im:
        np.testing.assert_array_equal(np.asarray(im), image_grid(images, nrow=3)[..., 0])
