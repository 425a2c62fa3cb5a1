"""The supported datasets: names, shapes, class names and normalisation.

Every loader in this package starts from `get_spec(name)`, so an unknown name
fails in one place with the list of valid names. The per-channel mean and std
are fixed constants of the training split (not recomputed per load), so the
normalisation of a model never depends on `limit` or on which source (TFDS or
local files) provided the pixels.
"""

import dataclasses
import functools
import importlib.resources
from typing import Dict, Mapping, Optional, Tuple

__all__ = [
    "DatasetInfo",
    "DatasetSpec",
    "SPLITS",
    "SOURCES",
    "check_split",
    "check_source",
    "dataset_info",
    "dataset_names",
    "get_spec",
]

SPLITS = ("train", "test")
SOURCES = ("auto", "local", "tfds")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model and its input normalisation need to know about a dataset.

  Attributes:
    name: Registry name, e.g. "cifar10".
    num_classes: Number of labels; labels are 0..num_classes-1.
    input_shape: (height, width, channels) of the model input.
    num_examples: Examples per split ("train", "test"). A loader that returns
      this object reports for the split it loaded the examples it actually
      yields (after `limit`); other splits keep the full official size. With
      a validation split (`build_dataset`), "train" counts the examples
      fitted and "validation" those held out.
    mean: Per-channel mean of the training pixels scaled to [0, 1].
    std: Per-channel standard deviation of the same.
    class_names: Name of each label index.
  """
  name: str
  num_classes: int
  input_shape: Tuple[int, int, int]
  num_examples: Mapping[str, int]
  mean: Tuple[float, ...]
  std: Tuple[float, ...]
  class_names: Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How to load and preprocess one dataset (package-internal).

  Attributes:
    info: The public description.
    local_format: "embedded" (scikit-learn), "idx" (MNIST-style files) or
      "image_folder" (train/<class>/* tree or archive of it).
    augmentation: "none", "cifar" (pad, crop, flip) or "imagenet" (random
      resized crop and flip; resize and centre crop at evaluation).
    tfds_name: TensorFlow Datasets name, or None when there is none.
    tfds_splits: TFDS split name for each of our splits.
    streamed: True when the dataset is too large to hold in memory, so it is
      read from files by tf.data instead of `load_arrays`.
  """
  info: DatasetInfo
  local_format: str
  augmentation: str
  tfds_name: Optional[str] = None
  tfds_splits: Mapping[str, str] = dataclasses.field(
      default_factory=lambda: {"train": "train", "test": "test"})
  streamed: bool = False

  @property
  def local_layout(self) -> str:
    """Describes the local files a user can pass as `data_dir`."""
    name = self.info.name
    if self.local_format == "idx":
      return (f"a directory (or its {name}/ subfolder) holding "
              "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
              "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each "
              "optionally .gz")
    if self.streamed:
      return (f"a directory (or its {name}/ subfolder) with train/<class>/* "
              "and val/<class>/* (or test/) images; or, for TFDS to prepare, "
              "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar")
    return (f"a directory (or its {name}/ subfolder) with train/<class>/* and "
            f"test/<class>/* images, a .tar.gz/.tgz/.tar of that tree, or a "
            f"directory holding such an archive named {name}.tar.gz or "
            f"{name}-*.tar.gz")


_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                    "frog", "horse", "ship", "truck")

# The fine labels in the order of the official meta file (alphabetical).
_CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle",
    "bicycle", "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel",
    "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster",
    "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse",
    "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
    "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea",
    "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip",
    "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm")

_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

_DIGIT_CLASSES = tuple(str(i) for i in range(10))


@functools.lru_cache(maxsize=None)
def _imagenet_classes() -> Tuple[str, ...]:
  """The 1000 WordNet ids in label order (the sorted synset folder names)."""
  try:
    package = "tensorflow_datasets.datasets.imagenet2012"
    text = (importlib.resources.files(package) / "labels.txt").read_text()
  except (ImportError, OSError):  # TFDS absent or stripped of its data files.
    return tuple(str(i) for i in range(1000))
  return tuple(line.strip() for line in text.splitlines() if line.strip())


def _info(name, num_classes, input_shape, train, test, mean, std, classes):
  return DatasetInfo(name=name, num_classes=num_classes,
                     input_shape=input_shape,
                     num_examples={"train": train, "test": test},
                     mean=mean, std=std, class_names=classes)


# Digits statistics are over our train split (first 1437 images, rescaled to
# 0..255); MNIST's match the usual published constants; CIFAR and ImageNet use
# the usual published constants.
_SPECS: Dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        info=_info("digits", 10, (8, 8, 1), 1437, 360, (0.30543,),
                   (0.37534,), _DIGIT_CLASSES),
        local_format="embedded", augmentation="none"),
    "mnist": DatasetSpec(
        info=_info("mnist", 10, (28, 28, 1), 60000, 10000, (0.1307,),
                   (0.3081,), _DIGIT_CLASSES),
        local_format="idx", augmentation="none", tfds_name="mnist"),
    "fashion_mnist": DatasetSpec(
        info=_info("fashion_mnist", 10, (28, 28, 1), 60000, 10000, (0.2860,),
                   (0.3530,), _FASHION_CLASSES),
        local_format="idx", augmentation="none", tfds_name="fashion_mnist"),
    "cifar10": DatasetSpec(
        info=_info("cifar10", 10, (32, 32, 3), 50000, 10000,
                   (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                   _CIFAR10_CLASSES),
        local_format="image_folder", augmentation="cifar",
        tfds_name="cifar10"),
    "cifar100": DatasetSpec(
        info=_info("cifar100", 100, (32, 32, 3), 50000, 10000,
                   (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                   _CIFAR100_CLASSES),
        local_format="image_folder", augmentation="cifar",
        tfds_name="cifar100"),
    "imagenet2012": DatasetSpec(
        info=_info("imagenet2012", 1000, (224, 224, 3), 1281167, 50000,
                   (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), ()),
        local_format="image_folder", augmentation="imagenet",
        tfds_name="imagenet2012",
        tfds_splits={"train": "train", "test": "validation"}, streamed=True),
}


def dataset_names() -> Tuple[str, ...]:
  """Returns the names accepted by the loaders, sorted."""
  return tuple(sorted(_SPECS))


def get_spec(name: str) -> DatasetSpec:
  """Returns the loading recipe of dataset `name`.

  Args:
    name: One of `dataset_names()`.

  Returns:
    The `DatasetSpec`; ImageNet's class names are read on first use.

  Raises:
    ValueError: If `name` is not a known dataset.
  """
  if name not in _SPECS:
    raise ValueError(
        f"Unknown dataset {name!r}; valid names: {', '.join(dataset_names())}.")
  spec = _SPECS[name]
  if not spec.info.class_names:
    info = dataclasses.replace(spec.info, class_names=_imagenet_classes())
    spec = dataclasses.replace(spec, info=info)
  return spec


def dataset_info(name: str) -> DatasetInfo:
  """Returns the `DatasetInfo` of `name` with the official split sizes.

  Raises:
    ValueError: If `name` is not a known dataset.
  """
  return get_spec(name).info


def check_split(split: str) -> None:
  """Raises ValueError unless `split` is one of `SPLITS`."""
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; valid splits: "
                     f"{', '.join(SPLITS)}.")


def check_source(source: str) -> None:
  """Raises ValueError unless `source` is one of `SOURCES`."""
  if source not in SOURCES:
    raise ValueError(f"Unknown source {source!r}; valid sources: "
                     f"{', '.join(SOURCES)}.")
