"""Tests of lilnetx_tf.data on the real MNIST and CIFAR-10 files, small scale.

CIFAR-10 is decoded once per session into a temporary cache (about 15-25 s);
every other test reads that cache or tiny files written to tmp_path.
"""

import collections
import gzip
import os
import tarfile

import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets
import tensorflow as tf

from lilnetx_tf import data
from lilnetx_tf.data import cache
from lilnetx_tf.data import idx
from lilnetx_tf.data import image_folder
from lilnetx_tf.data import tfds_source

DATA = os.environ.get("LILNETX_DATA_DIR", os.path.join(
    os.path.dirname(os.path.realpath(__file__)), os.pardir, os.pardir, "shared",
    "data"))
MNIST = os.path.join(DATA, "mnist")
CIFAR10 = os.path.join(DATA, "cifar10", "cifar10-jpeg.tar.gz")



@pytest.fixture(scope="session")
def shared_data():
  """Fails (never skips) when the shared real data is missing."""
  for path in (MNIST, CIFAR10):
    if not os.path.exists(path):
      pytest.fail(f"Real test data not found: {path} (set LILNETX_DATA_DIR).")


needs_mnist = needs_cifar = pytest.mark.usefixtures("shared_data")


def _no_decoding(monkeypatch):
  """Makes decoding an image an error: what follows must read a cache."""
  def refuse(*args, **kwargs):
    raise AssertionError("an image was decoded instead of read from the cache")
  monkeypatch.setattr(image_folder, "_decode_image", refuse)


@pytest.fixture(scope="session")
def cifar_cache(tmp_path_factory):
  """A cache directory holding CIFAR-10 decoded once for the whole session."""
  if not os.path.isfile(CIFAR10):
    pytest.fail(f"Real test data not found: {CIFAR10}.")
  cache_dir = str(tmp_path_factory.mktemp("cifar_cache"))
  data.load_arrays("cifar10", "train", data_dir=DATA, cache_dir=cache_dir)
  return cache_dir


def _random_images(rng, count, shape):
  return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]


def _write_tree(root, images_by_split):
  """Writes {split: {class: [array]}} as root/split/class/NNN.png."""
  for split, by_class in images_by_split.items():
    for class_name, images in by_class.items():
      os.makedirs(os.path.join(root, split, class_name))
      for i, image in enumerate(images):
        PIL.Image.fromarray(image.squeeze()).save(
            os.path.join(root, split, class_name, f"{i:03d}.png"))


def _tar_gz(path, root, arcname):
  with tarfile.open(path, "w:gz") as archive:
    archive.add(root, arcname=arcname)


# Registry and argument checks.


def test_unknown_names_and_arguments_raise_listing_valid_choices():
  names = data.dataset_names()
  assert names == ("cifar10", "cifar100", "digits", "fashion_mnist",
                   "imagenet2012", "mnist")
  for call in (lambda: data.load_arrays("svhn", "train"),
               lambda: data.build_dataset("svhn", "train", batch_size=2,
                                          training=False),
               lambda: data.dataset_info("svhn")):
    with pytest.raises(ValueError, match="'svhn'") as error:
      call()
    assert all(name in str(error.value) for name in names)
  with pytest.raises(ValueError, match="valid splits: train, test"):
    data.load_arrays("digits", "validation")
  with pytest.raises(ValueError, match="valid sources: auto, local, tfds"):
    data.load_arrays("mnist", "train", source="web")
  with pytest.raises(ValueError, match="limit"):
    data.load_arrays("digits", "train", limit=0)
  with pytest.raises(ValueError, match="batch_size"):
    data.build_dataset("digits", "train", batch_size=0, training=True)
  with pytest.raises(ValueError, match="build_dataset"):
    data.load_arrays("imagenet2012", "train")


def test_registry_infos_are_consistent():
  for name in data.dataset_names():
    info = data.dataset_info(name)
    assert info.name == name
    assert len(info.class_names) == info.num_classes
    assert len(set(info.class_names)) == info.num_classes
    assert len(info.mean) == len(info.std) == info.input_shape[-1]
  imagenet = data.dataset_info("imagenet2012")
  assert imagenet.input_shape == (224, 224, 3)
  assert imagenet.class_names == tuple(sorted(imagenet.class_names))
  assert imagenet.class_names[0] == "n01440764"
  assert data.dataset_info("cifar100").class_names[:3] == (
      "apple", "aquarium_fish", "baby")


# Digits (embedded).


def test_digits_split_scaling_and_constants():
  x_train, y_train, info = data.load_arrays("digits", "train")
  x_test, y_test, _ = data.load_arrays("digits", "test")
  assert x_train.shape == (1437, 8, 8, 1) and x_test.shape == (360, 8, 8, 1)
  assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
  assert info.num_examples == {"train": 1437, "test": 360}
  # 0..16 maps onto 0..255, and the first digits of scikit-learn are 0, 1, 2.
  assert x_train.min() == 0 and x_train.max() == 255
  assert list(y_train[:3]) == [0, 1, 2]
  values = np.unique(np.concatenate([x_train.ravel(), x_test.ravel()]))
  assert set(values) <= {round(v * 255 / 16) for v in range(17)}
  # The registry's constants are the train split's statistics.
  np.testing.assert_allclose(x_train.mean() / 255, info.mean[0], atol=1e-5)
  np.testing.assert_allclose(x_train.std() / 255, info.std[0], atol=1e-5)
  x5, y5, info5 = data.load_arrays("digits", "train", limit=5)
  np.testing.assert_array_equal(x5, x_train[:5])
  np.testing.assert_array_equal(y5, y_train[:5])
  assert info5.num_examples == {"train": 5, "test": 360}


# IDX files.


@needs_mnist
def test_mnist_from_real_idx_files(tmp_path):
  x_train, y_train, info = data.load_arrays("mnist", "train", data_dir=DATA)
  x_test, y_test, _ = data.load_arrays("mnist", "test", data_dir=MNIST)
  assert x_train.shape == (60000, 28, 28, 1) and x_test.shape == (10000, 28,
                                                                   28, 1)
  assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
  assert info.num_examples == {"train": 60000, "test": 10000}
  # Known facts of the official files.
  assert y_train[0] == 5 and y_test[0] == 7
  assert list(np.bincount(y_test)) == [980, 1135, 1032, 1010, 982, 892, 958,
                                       1028, 974, 1009]
  assert x_train.max() == 255 and x_train[0, 0, 0, 0] == 0
  np.testing.assert_allclose(x_train.mean() / 255, info.mean[0], atol=1e-4)
  np.testing.assert_allclose(x_train.std() / 255, info.std[0], atol=1e-4)
  # Plain (non-gzip) files read the same.
  with gzip.open(os.path.join(MNIST, "t10k-labels-idx1-ubyte.gz")) as f:
    (tmp_path / "plain").write_bytes(f.read())
  np.testing.assert_array_equal(idx.read_idx(str(tmp_path / "plain")), y_test)


@needs_mnist
def test_corrupted_idx_files_raise_clear_errors(tmp_path):
  with gzip.open(os.path.join(MNIST, "t10k-labels-idx1-ubyte.gz")) as f:
    labels = f.read()
  truncated = tmp_path / "truncated-labels"
  truncated.write_bytes(labels[:-10])
  with pytest.raises(ValueError,
                     match="truncated-labels.*10000 bytes.*holds 9990"):
    idx.read_idx(str(truncated))
  with open(os.path.join(MNIST, "t10k-labels-idx1-ubyte.gz"), "rb") as f:
    compressed = f.read()
  cut = tmp_path / "cut.gz"
  cut.write_bytes(compressed[:len(compressed) // 2])
  with pytest.raises(ValueError, match="cut.gz.*gzip"):
    idx.read_idx(str(cut))
  bad_magic = tmp_path / "bad-magic"
  bad_magic.write_bytes(b"\x01\x02" + labels[2:])
  with pytest.raises(ValueError, match="bad-magic.*magic"):
    idx.read_idx(str(bad_magic))
  # A directory whose labels disagree with its images.
  images_name, labels_name = idx.IDX_FILES["test"]
  os.symlink(os.path.join(os.path.abspath(MNIST), images_name + ".gz"),
             tmp_path / f"{images_name}.gz")
  (tmp_path / labels_name).write_bytes(
      labels[:4] + (9999).to_bytes(4, "big") + labels[8:-1])
  with pytest.raises(ValueError, match="10000 images but .* 9999 labels"):
    data.load_arrays("mnist", "test", data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
    data.load_arrays("mnist", "train", data_dir=str(tmp_path))


# Image folders and their cache.


def _small_tree(rng):
  """Images of three classes, created in unsorted class order."""
  return {
      "train": {c: _random_images(rng, n, (5, 4, 3))
                for c, n in (("zebra", 3), ("ant", 2), ("moth", 3))},
      "test": {c: _random_images(rng, 1, (5, 4, 3)) for c in ("moth", "ant")},
  }


def test_image_folder_archive_round_trip_and_cache(tmp_path, monkeypatch):
  tree = _small_tree(np.random.default_rng(0))
  _write_tree(tmp_path / "src", tree)
  archive = str(tmp_path / "small.tar.gz")
  _tar_gz(archive, tmp_path / "src", arcname="small")  # Under a top folder.
  cache_dir = str(tmp_path / "cache")

  x, y, classes = data.load_image_folder(archive, "train", cache_dir=cache_dir)
  assert classes == ("ant", "moth", "zebra")
  assert x.shape == (8, 5, 4, 3) and x.dtype == np.uint8
  # Round-robin over classes, files sorted within each class.
  assert list(y) == [0, 1, 2, 0, 1, 2, 1, 2]
  rank = {0: 0, 1: 0, 2: 0}
  for image, label in zip(x, y):
    np.testing.assert_array_equal(image, tree["train"][classes[label]][
        rank[label]])
    rank[label] += 1
  x_test, y_test, _ = data.load_image_folder(archive, "test",
                                             cache_dir=cache_dir)
  assert list(y_test) == [0, 1]
  np.testing.assert_array_equal(x_test[1], tree["test"]["moth"][0])
  cached = os.listdir(cache_dir)
  assert len(cached) == 1 and cached[0].endswith(".npz")  # No temp files.

  # The second load reads the cache: decoding would fail.
  def no_decoding(*args):
    raise AssertionError(f"decoded again: {args[2]}")
  monkeypatch.setattr(image_folder, "_decode_image", no_decoding)
  x2, y2, _ = data.load_image_folder(archive, "train", cache_dir=cache_dir)
  np.testing.assert_array_equal(x2, x)
  np.testing.assert_array_equal(y2, y)
  monkeypatch.undo()

  # A corrupted cache is rebuilt.
  cache_path = os.path.join(cache_dir, cached[0])
  with open(cache_path, "r+b") as f:
    f.truncate(os.path.getsize(cache_path) // 2)
  x3, _, _ = data.load_image_folder(archive, "train", cache_dir=cache_dir)
  np.testing.assert_array_equal(x3, x)
  assert cache.read_cache(cache_path, "wrong-source") is None
  with np.load(cache_path) as npz:
    np.testing.assert_array_equal(npz["train_x"], x)

  # The same tree as a directory gives the same arrays.
  x4, y4, classes4 = data.load_image_folder(str(tmp_path / "src"), "train",
                                            cache_dir=cache_dir)
  np.testing.assert_array_equal(x4, x)
  np.testing.assert_array_equal(y4, y)
  assert classes4 == classes
  _write_tree(tmp_path / "train_only", {"train": tree["train"]})
  with pytest.raises(ValueError,
                     match="no 'test' images; expected test/ or val/"):
    data.load_image_folder(str(tmp_path / "train_only"), "test",
                           cache_dir=cache_dir)


def test_changed_source_invalidates_cache(tmp_path):
  rng = np.random.default_rng(1)
  _write_tree(tmp_path / "src", {"train": {"a": _random_images(rng, 2, (3, 3,
                                                                       3))}})
  cache_dir = str(tmp_path / "cache")
  x, _, _ = data.load_image_folder(str(tmp_path / "src"), "train",
                                   cache_dir=cache_dir)
  replacement = rng.integers(0, 256, (3, 3, 3), dtype=np.uint8)
  changed = tmp_path / "src" / "train" / "a" / "001.png"
  PIL.Image.fromarray(replacement).save(changed)
  stat = os.stat(changed)  # Coarse file-system clocks: make the change show.
  os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
  x2, _, _ = data.load_image_folder(str(tmp_path / "src"), "train",
                                    cache_dir=cache_dir)
  np.testing.assert_array_equal(x2[0], x[0])
  np.testing.assert_array_equal(x2[1], replacement)


def test_interrupted_cache_write_leaves_nothing(tmp_path, monkeypatch):
  def interrupted_savez(file, **arrays):
    del arrays
    file.write(b"PK partial")
    raise KeyboardInterrupt
  monkeypatch.setattr(cache.np, "savez", interrupted_savez)
  path = str(tmp_path / "cache" / "x.npz")
  with pytest.raises(KeyboardInterrupt):
    cache.write_cache(path, {"a": np.zeros(3)}, "fingerprint")
  assert os.listdir(tmp_path / "cache") == []


def test_default_cache_dir_avoids_read_only_data(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  writable = tmp_path / "writable"
  writable.mkdir()
  assert cache.default_cache_dir(str(writable / "d.tar.gz")) == str(
      writable / ".cache")
  read_only = tmp_path / "read_only"
  read_only.mkdir()
  read_only.chmod(0o555)
  try:
    assert cache.default_cache_dir(str(read_only)) == str(
        tmp_path / "xdg" / "lilnetx_tf")
  finally:
    read_only.chmod(0o755)


def test_bad_images_and_shapes_raise(tmp_path):
  rng = np.random.default_rng(2)
  _write_tree(tmp_path / "mixed", {"train": {
      "a": _random_images(rng, 1, (4, 4, 3)),
      "b": _random_images(rng, 1, (5, 4, 3))}})
  with pytest.raises(ValueError, match="one size"):
    data.load_image_folder(str(tmp_path / "mixed"), "train",
                           cache_dir=str(tmp_path / "c"))
  broken = tmp_path / "broken" / "train" / "a"
  broken.mkdir(parents=True)
  (broken / "x.png").write_bytes(b"not a png")
  with pytest.raises(ValueError, match="Cannot decode image .*x.png"):
    data.load_image_folder(str(tmp_path / "broken"), "train",
                           cache_dir=str(tmp_path / "c"))
  cut = tmp_path / "cut.tar.gz"
  _tar_gz(str(tmp_path / "full.tar.gz"), tmp_path / "mixed", "mixed")
  cut.write_bytes((tmp_path / "full.tar.gz").read_bytes()[:100])
  with pytest.raises(ValueError, match="cut.tar.gz.*archive"):
    data.load_image_folder(str(cut), "train", cache_dir=str(tmp_path / "c"))


def test_local_cifar_tree_is_checked_against_the_registry(tmp_path):
  rng = np.random.default_rng(3)
  classes = data.dataset_info("cifar10").class_names
  _write_tree(tmp_path / "cifar10", {
      "train": {c: _random_images(rng, 1, (32, 32, 3)) for c in classes},
      "test": {c: _random_images(rng, 1, (32, 32, 3)) for c in classes}})
  x, y, info = data.load_arrays("cifar10", "test", data_dir=str(tmp_path),
                                cache_dir=str(tmp_path / "c"), source="local")
  assert x.shape == (10, 32, 32, 3) and list(y) == list(range(10))
  assert info.class_names == classes and info.num_examples["test"] == 10
  with pytest.raises(ValueError, match="10 classes.*cifar100 has 100"):
    data.load_arrays("cifar100", "test", data_dir=str(tmp_path / "cifar10"),
                     cache_dir=str(tmp_path / "c"))
  with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
    data.load_arrays("fashion_mnist", "test", data_dir=str(tmp_path),
                     source="local")


# Real CIFAR-10 (decoded once per session).


@needs_cifar
def test_cifar10_from_real_archive(cifar_cache, monkeypatch):
  _no_decoding(monkeypatch)  # Read from the session's cache.
  x_train, y_train, info = data.load_arrays("cifar10", "train", data_dir=DATA,
                                            cache_dir=cifar_cache)
  x_test, y_test, _ = data.load_arrays("cifar10", "test", data_dir=CIFAR10,
                                       cache_dir=cifar_cache)
  assert x_train.shape == (50000, 32, 32, 3) and x_test.shape == (10000, 32,
                                                                   32, 3)
  assert info.num_classes == 10
  assert info.class_names == data.dataset_info("cifar10").class_names
  assert list(np.bincount(y_train)) == [5000] * 10
  assert list(np.bincount(y_test)) == [1000] * 10
  # The registry constants fit this JPEG copy closely.
  scaled = x_train[::7] / 255.0  # 7: not a multiple of the 10 classes.
  np.testing.assert_allclose(scaled.mean((0, 1, 2)), info.mean, atol=0.01)
  np.testing.assert_allclose(scaled.std((0, 1, 2)), info.std, atol=0.01)
  x20, y20, info20 = data.load_arrays("cifar10", "test", data_dir=DATA,
                                      cache_dir=cifar_cache, limit=20)
  assert list(y20) == list(range(10)) * 2  # limit is class-balanced.
  np.testing.assert_array_equal(x20, x_test[:20])
  assert info20.num_examples == {"train": 50000, "test": 20}


@needs_cifar
def test_build_dataset_normalises_batches(cifar_cache):
  ds, info = data.build_dataset("cifar10", "train", batch_size=500,
                                training=True, augment=False, data_dir=DATA,
                                cache_dir=cifar_cache, limit=4000)
  assert info.num_examples["train"] == 4000
  images = np.concatenate([x for x, _ in ds.as_numpy_iterator()])
  assert images.shape == (4000, 32, 32, 3) and images.dtype == np.float32
  np.testing.assert_allclose(images.mean((0, 1, 2)), 0.0, atol=0.05)
  np.testing.assert_allclose(images.std((0, 1, 2)), 1.0, atol=0.05)

  # Evaluation keeps the order and equals `normalize` exactly.
  x, y, info = data.load_arrays("cifar10", "test", data_dir=DATA,
                                cache_dir=cifar_cache, limit=300)
  ds, _ = data.build_dataset("cifar10", "test", batch_size=128,
                             training=False, data_dir=DATA,
                             cache_dir=cifar_cache, limit=300)
  batches = list(ds.as_numpy_iterator())
  assert [len(b[1]) for b in batches] == [128, 128, 44]
  assert batches[0][1].dtype == np.int32
  np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]),
                                data.normalize(x, info))
  np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
  np.testing.assert_array_equal(data.normalize(tf.constant(x), info).numpy(),
                                data.normalize(x, info))


@needs_cifar
def test_cifar_augmentation_is_pad_crop_flip(cifar_cache):
  kwargs = dict(batch_size=64, training=True, data_dir=DATA,
                cache_dir=cifar_cache, limit=256, seed=7)
  plain_ds, info = data.build_dataset("cifar10", "train", augment=False,
                                      **kwargs)
  augmented_ds, _ = data.build_dataset("cifar10", "train", **kwargs)
  plain, labels = next(iter(plain_ds.as_numpy_iterator()))
  augmented, augmented_labels = next(iter(augmented_ds.as_numpy_iterator()))
  np.testing.assert_array_equal(labels, augmented_labels)  # Same shuffle.
  assert augmented.shape == plain.shape == (64, 32, 32, 3)
  assert not np.array_equal(augmented, plain)
  # Each augmented image is a (mirrored) window of the zero-padded image.
  pad = data.normalize(np.zeros((1, 1, 3), np.uint8), info)
  for original, result in zip(plain[:16], augmented[:16]):
    padded = np.tile(pad, (40, 40, 1))
    padded[4:36, 4:36] = original
    windows = [w for r in range(9) for c in range(9)
               for w in (padded[r:r + 32, c:c + 32],
                         padded[r:r + 32, c:c + 32][:, ::-1])]
    assert any(np.array_equal(result, w) for w in windows)
  # Everything random follows the seed.
  again, _ = next(iter(data.build_dataset("cifar10", "train",
                                          **kwargs)[0].as_numpy_iterator()))
  np.testing.assert_array_equal(again, augmented)
  other_seed = dict(kwargs, seed=8)
  other, _ = next(iter(data.build_dataset("cifar10", "train",
                                          **other_seed)[0].as_numpy_iterator()))
  assert not np.array_equal(other, augmented)


def test_training_pipeline_without_augmentation_permutes_examples():
  x, y, info = data.load_arrays("digits", "train", limit=100)
  ds, _ = data.build_dataset("digits", "train", batch_size=32, training=True,
                             limit=100, drop_remainder=False)
  epochs = [list(ds.as_numpy_iterator()) for _ in range(2)]
  first = np.concatenate([b[1] for b in epochs[0]])
  second = np.concatenate([b[1] for b in epochs[1]])
  assert sorted(first) == sorted(y) and not np.array_equal(first, second)
  expected = {(img.tobytes(), label)
              for img, label in zip(data.normalize(x, info), y)}
  got = {(img.tobytes(), label) for b in epochs[0] for img, label in zip(*b)}
  assert got == expected


def _keys(x, y):
  return collections.Counter((image.tobytes(), int(label))
                             for image, label in zip(x, y))


def _batch_keys(ds, info):
  """Counter of (uint8 pixels, label) of the examples of a normalised ds."""
  x, y = zip(*ds.as_numpy_iterator())
  pixels = np.round((np.concatenate(x) * np.float32(info.std)
                     + np.float32(info.mean)) * 255).astype(np.uint8)
  return _keys(pixels, np.concatenate(y))


def test_validation_split_partitions_the_training_examples():
  x, y, _ = data.load_arrays("digits", "train")
  kwargs = dict(batch_size=100, training=False, validation_fraction=0.1)
  fitted_ds, info = data.build_dataset("digits", "train", **kwargs)
  held_ds, held_info = data.build_dataset("digits", "validation", **kwargs)
  # round(0.1 * 1437) held out, the other 1293 fitted; both infos agree.
  assert info.num_examples == held_info.num_examples == {
      "train": 1293, "validation": 144, "test": 360}
  fitted, held = _batch_keys(fitted_ds, info), _batch_keys(held_ds, info)
  assert sum(fitted.values()) == 1293 and sum(held.values()) == 144
  assert fitted + held == _keys(x, y)  # A partition of the training split.
  again, _ = data.build_dataset("digits", "validation", **kwargs)
  assert _batch_keys(again, info) == held
  other, _ = data.build_dataset("digits", "validation", seed=1, **kwargs)
  assert _batch_keys(other, info) != held
  capped, capped_info = data.build_dataset(
      "digits", "validation", max_validation_examples=50, **kwargs)
  assert capped_info.num_examples["validation"] == 50
  assert sum(_batch_keys(capped, info).values()) == 50
  with pytest.raises(ValueError, match="needs validation examples"):
    data.build_dataset("digits", "validation", batch_size=8, training=False)


@pytest.mark.parametrize("n,fraction,cap,expected", [
    (1437, 0.1, None, 144), (60000, 0.1, 5000, 5000), (100, 0.29, None, 29),
    (50000, 0.1, 5000, 5000), (1437, 0.0, 5000, 0), (1437, 0.1, 0, 0)])
def test_validation_size(n, fraction, cap, expected):
  assert data.validation_size(n, fraction, cap) == expected


@pytest.mark.parametrize("fraction,cap", [(1.0, None), (-0.1, None),
                                          (True, None), (0.1, -1)])
def test_validation_size_rejects_bad_values(fraction, cap):
  with pytest.raises(ValueError):
    data.validation_size(100, fraction, cap)


def test_training_epochs_depend_only_on_seed_and_epoch():
  x, y, _ = data.load_arrays("digits", "train", limit=100)
  kwargs = dict(batch_size=32, training=True, limit=100, drop_remainder=False,
                epochs=3)
  ds, info = data.build_dataset("digits", "train", **kwargs)
  batches = list(ds.as_numpy_iterator())
  assert [len(b[1]) for b in batches] == [32, 32, 32, 4] * 3  # Per epoch.
  epochs = [batches[4 * e:4 * e + 4] for e in range(3)]
  orders = [np.concatenate([b[1] for b in epoch]) for epoch in epochs]
  for epoch in epochs:  # Each epoch: every example once.
    assert _batch_keys(tf.data.Dataset.from_tensor_slices(
        tuple(np.concatenate(part) for part in zip(*epoch))).batch(100),
                       info) == _keys(x, y)
  assert not np.array_equal(orders[0], orders[1])
  assert not np.array_equal(orders[1], orders[2])
  # Started at epoch 2 (a resumed run), it yields epochs 2 and 3 exactly.
  resumed, _ = data.build_dataset("digits", "train", initial_epoch=1,
                                  **kwargs)
  resumed = list(resumed.as_numpy_iterator())
  assert len(resumed) == 8
  for a, b in zip(resumed, batches[4:]):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
  with pytest.raises(ValueError, match="initial_epoch"):
    data.build_dataset("digits", "train", batch_size=8, training=True,
                       epochs=2, initial_epoch=3)


@needs_cifar
def test_augmented_epochs_resume_exactly(cifar_cache):
  kwargs = dict(batch_size=64, training=True, data_dir=DATA,
                cache_dir=cifar_cache, limit=256, seed=3, epochs=2)
  full = list(data.build_dataset("cifar10", "train",
                                 **kwargs)[0].as_numpy_iterator())
  resumed = list(data.build_dataset("cifar10", "train", initial_epoch=1,
                                    **kwargs)[0].as_numpy_iterator())
  assert len(full) == 8 and len(resumed) == 4
  for a, b in zip(resumed, full[4:]):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
  # Not a replay of the first epoch.
  assert not np.array_equal(resumed[0][0], full[0][0])


# ImageNet-style streaming.


def test_imagenet_tree_streams_at_224(tmp_path):
  rng = np.random.default_rng(4)
  wnids = [f"n{i:08d}" for i in range(1000)]
  for i, wnid in enumerate(wnids):
    folder = tmp_path / "train" / wnid
    folder.mkdir(parents=True)
    shape = (30 + 7 * i, 40, 3) if i < 6 else (2, 2, 3)  # Sizes vary.
    PIL.Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(
        folder / "a.png")
  (tmp_path / "val" / wnids[1]).mkdir(parents=True)
  PIL.Image.fromarray(rng.integers(0, 256, (50, 20, 3), dtype=np.uint8)).save(
      tmp_path / "val" / wnids[1] / "b.jpg")

  ds, info = data.build_dataset("imagenet2012", "train", batch_size=3,
                                training=True, data_dir=str(tmp_path),
                                source="local", limit=6)
  assert info.class_names == tuple(wnids) and info.num_examples["train"] == 6
  batches = list(ds.as_numpy_iterator())
  assert len(batches) == 2
  for images, labels in batches:
    assert images.shape == (3, 224, 224, 3) and images.dtype == np.float32
  assert sorted(np.concatenate([b[1] for b in batches])) == list(range(6))
  ds, info = data.build_dataset("imagenet2012", "test", batch_size=2,
                                training=False, data_dir=str(tmp_path))
  images, labels = next(iter(ds.as_numpy_iterator()))
  assert images.shape == (1, 224, 224, 3) and list(labels) == [1]
  assert info.num_examples == {"train": 1281167, "test": 1}


# TensorFlow Datasets fallback.


def test_tfds_offline_fails_fast_with_local_file_hint(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds_source, "network_reachable", lambda: False)

  def no_download(*args, **kwargs):  # Offline: no download may be tried.
    raise AssertionError("tfds.load was called although the network is down")
  monkeypatch.setattr(tensorflow_datasets, "load", no_download)
  with pytest.raises(data.DataUnavailableError) as error:
    data.load_arrays("fashion_mnist", "train", data_dir=str(tmp_path))
  message = str(error.value)
  assert "'fashion_mnist'" in message and "data_dir=" in message
  assert "train-images-idx3-ubyte" in message and "unreachable" in message


def test_tfds_errors_are_wrapped(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  def failing_load(*args, **kwargs):
    del args, kwargs
    raise ConnectionError("Max retries exceeded")
  monkeypatch.setattr(tfds_source, "network_reachable", lambda: True)
  monkeypatch.setattr(tfds, "load", failing_load)
  with pytest.raises(data.DataUnavailableError,
                     match="ConnectionError: Max retries.*data_dir=") as error:
    data.build_dataset("cifar10", "train", batch_size=8, training=True,
                       data_dir=str(tmp_path))
  assert isinstance(error.value.__cause__, ConnectionError)
  assert "test/<class>" in str(error.value)


def test_tfds_source_through_mock_data(monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(tfds_source, "network_reachable", lambda: True)
  with tfds.testing.mock_data(num_examples=6):  # Random data, no download.
    x, y, info = data.load_arrays("cifar100", "test", source="tfds")
    assert x.shape == (6, 32, 32, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64 and info.num_examples["test"] == 6
    ds, info = data.build_dataset("imagenet2012", "train", batch_size=2,
                                  training=True, limit=4)
    batches = list(ds.as_numpy_iterator())
    # A validation split of the stream: the sizes (mock data ignores which
    # examples a slice holds).
    held_out = dict(batch_size=1, limit=5, validation_fraction=0.4)
    fitted_ds, fitted_info = data.build_dataset(
        "imagenet2012", "train", training=True, **held_out)
    held_ds, held_info = data.build_dataset(
        "imagenet2012", "validation", training=False, **held_out)
    sizes = (len(list(fitted_ds)), len(list(held_ds)))
  assert [b[0].shape for b in batches] == [(2, 224, 224, 3)] * 2
  assert info.num_examples["train"] == 4
  assert sizes == (3, 2)
  assert fitted_info.num_examples == held_info.num_examples == {
      "train": 3, "validation": 2, "test": 50000}
