"""Data: seeded toy sets and Gaussian mixtures, offline and tfds image data."""

from jaxdiff.data.images import (
    IMAGE_DATA_NAMES,
    ImageData,
    MissingDatasetError,
    build_image_data,
)
from jaxdiff.data.toy import (
    TOY_NAMES,
    GaussianMixture,
    ToyData,
    mixture_8gaussians,
    mixture_25gaussians,
    random_mixture,
    sample_toy,
    toy_mixture,
)

__all__ = [
    "IMAGE_DATA_NAMES",
    "TOY_NAMES",
    "GaussianMixture",
    "ImageData",
    "MissingDatasetError",
    "ToyData",
    "build_image_data",
    "mixture_25gaussians",
    "mixture_8gaussians",
    "random_mixture",
    "sample_toy",
    "toy_mixture",
]
