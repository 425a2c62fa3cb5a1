"""Datasets for LilNetX experiments: registry, loaders and tf.data pipelines.

Names: digits (scikit-learn, embedded), mnist, fashion_mnist, cifar10,
cifar100 and imagenet2012. Each loads from local files when `data_dir` holds
them (IDX files, an image tree or a .tar.gz of one), else from TensorFlow
Datasets.

  x, y, info = load_arrays("cifar10", "test", data_dir="../shared/data")
  ds, info = build_dataset("cifar10", "train", batch_size=128, training=True,
                           data_dir="../shared/data")
  inputs = normalize(x, info)  # What `ds` feeds the model.

`build_dataset(..., validation_fraction=0.1)` holds a seed-chosen share of the
training examples out as a "validation" split, for choosing models without
looking at the test split.

* `registry`: the supported datasets: names, shapes, classes, normalisation;
* `sources`: where a dataset comes from; small ones loaded into memory;
* `idx`: the IDX files of MNIST and Fashion-MNIST;
* `image_folder`: image trees (`train/<class>/<image>`) and archives of them;
* `tfds_source`: TensorFlow Datasets, failing fast and clearly offline;
* `cache`: the on-disk cache of decoded arrays;
* `holdout`: the validation split;
* `augment`: per-image preprocessing and augmentation ops;
* `pipeline`: the tf.data pipelines (`build_dataset`).
"""

from lilnetx_tf.data.holdout import validation_indices
from lilnetx_tf.data.holdout import validation_size
from lilnetx_tf.data.idx import read_idx
from lilnetx_tf.data.image_folder import list_image_files
from lilnetx_tf.data.image_folder import load_image_folder
from lilnetx_tf.data.pipeline import build_dataset
from lilnetx_tf.data.pipeline import normalize
from lilnetx_tf.data.registry import DatasetInfo
from lilnetx_tf.data.registry import dataset_info
from lilnetx_tf.data.registry import dataset_names
from lilnetx_tf.data.sources import load_arrays
from lilnetx_tf.data.tfds_source import DataUnavailableError

__all__ = [
    "DataUnavailableError",
    "DatasetInfo",
    "build_dataset",
    "dataset_info",
    "dataset_names",
    "list_image_files",
    "load_arrays",
    "load_image_folder",
    "normalize",
    "read_idx",
    "validation_indices",
    "validation_size",
]
