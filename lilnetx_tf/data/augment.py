"""Per-image preprocessing and augmentation ops for tf.data pipelines.

The random ops are stateless and take a seed tensor of shape [2], so that a
pipeline's augmentation is reproducible from its seed. Outputs keep pixel
values in [0, 255] (uint8 for CIFAR, float32 after a resize for ImageNet);
normalisation happens afterwards, on whole batches.
"""

from typing import Tuple

import tensorflow as tf

__all__ = ["center_crop", "pad_crop_flip", "random_resized_crop"]


def pad_crop_flip(image: tf.Tensor, seed: tf.Tensor,
                  padding: int = 4) -> tf.Tensor:
  """The standard CIFAR augmentation: zero-pad, random crop back, random flip.

  Args:
    image: [H, W, C] image.
    seed: int32/int64 [2] stateless seed.
    padding: Pixels of zeros added on each side before cropping.

  Returns:
    An [H, W, C] image of the same dtype: a window of the padded image,
    mirrored left-right with probability 1/2.
  """
  crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2))
  padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
  cropped = tf.image.stateless_random_crop(padded, tf.shape(image),
                                           seed=crop_seed)
  return tf.image.stateless_random_flip_left_right(cropped, seed=flip_seed)


def random_resized_crop(image: tf.Tensor, seed: tf.Tensor, size: int = 224,
                        area_range: Tuple[float, float] = (0.08, 1.0),
                        aspect_ratio_range: Tuple[float, float] = (3 / 4,
                                                                   4 / 3)
                        ) -> tf.Tensor:
  """The standard ImageNet training crop ("Inception crop") and random flip.

  Args:
    image: [H, W, 3] image of any size.
    seed: int32/int64 [2] stateless seed.
    size: Output height and width.
    area_range: Range of the crop's fraction of the image area.
    aspect_ratio_range: Range of the crop's width / height.

  Returns:
    A float32 [size, size, 3] image with values in [0, 255].
  """
  crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2))
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=crop_seed, min_object_covered=0.1,
      aspect_ratio_range=aspect_ratio_range, area_range=area_range,
      max_attempts=10, use_image_if_no_bounding_boxes=True)
  crop = tf.slice(image, begin, crop_size)
  resized = tf.image.resize(crop, [size, size], antialias=True)
  return tf.image.stateless_random_flip_left_right(resized, seed=flip_seed)


def center_crop(image: tf.Tensor, size: int = 224,
                resize_to: int = 256) -> tf.Tensor:
  """The standard ImageNet evaluation view: resize, then central crop.

  Crops the central square of side min(H, W) * size / resize_to and resizes
  it to `size`: the same view as resizing the shorter side to `resize_to`
  and cropping `size`, at a fraction of the resizing work.

  Args:
    image: [H, W, C] image of any size.
    size: Output height and width.
    resize_to: Shorter side the crop is taken from, in the resized image.

  Returns:
    A float32 [size, size, C] image with values in [0, 255].
  """
  shape = tf.shape(image)
  height, width = shape[0], shape[1]
  side = tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * size
                 / resize_to, tf.int32)
  side = tf.maximum(side, 1)
  top, left = (height - side) // 2, (width - side) // 2
  crop = image[top:top + side, left:left + side]
  return tf.image.resize(crop, [size, size], antialias=True)
