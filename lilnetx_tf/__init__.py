"""LilNetX for TensorFlow/Keras: extreme model compression and structured sparsity.

The three forms of a weight:
- training: float latents in `LatentConv1D` / `LatentConv2D` /
  `LatentDepthwiseConv2D` / `LatentSeparableConv2D` / `LatentDense`, decoded
  by shared decoders inside a `LilNetXModel` (`lilnetx_tf.method`);
- compressed: range-coded integer latents (`compress_latents`,
  `save_compressed`; `lilnetx_tf.compressed`);
- decompressed: plain float kernels in a stock Keras model
  (`decompressed_model`), made smaller and exported (`lilnetx_tf.deploy`).

docs/architecture.md maps the subpackages.
"""

from lilnetx_tf._quiet import import_tensorflow_quietly as _import_tf

_import_tf()

# pylint: disable=g-import-not-at-top,wrong-import-position
from lilnetx_tf.method.callbacks import CompressionLogger
from lilnetx_tf.method.callbacks import NonFiniteError
from lilnetx_tf.method.callbacks import RateWarmup
from lilnetx_tf.method.callbacks import StopOnNonFinite
from lilnetx_tf.compressed.codec import compress_latents
from lilnetx_tf.compressed.codec import decompress_latents
from lilnetx_tf.method.convert import compressible
from lilnetx_tf.method.convert import decompressed_model
from lilnetx_tf.method.decoders import KernelDecoder
from lilnetx_tf.method.distillation import Distillation
from lilnetx_tf.compressed.fileformat import CoderUnavailableError
from lilnetx_tf.compressed.frontier import Frontier
from lilnetx_tf.compressed.fileformat import CorruptFileError
from lilnetx_tf.compressed.fileformat import inspect_compressed
from lilnetx_tf.compressed.fileformat import load_compressed
from lilnetx_tf.compressed.fileformat import MissingCustomObjectError
from lilnetx_tf.compressed.fileformat import recode_compressed
from lilnetx_tf.compressed.fileformat import save_compressed
from lilnetx_tf.method.layers import LatentConv1D
from lilnetx_tf.method.layers import LatentConv2D
from lilnetx_tf.method.layers import LatentDense
from lilnetx_tf.method.layers import LatentDepthwiseConv2D
from lilnetx_tf.method.layers import LatentSeparableConv2D
from lilnetx_tf.method.model import LilNetXModel
from lilnetx_tf.method.priors import GroupPrior
from lilnetx_tf.method.stats import compression_stats
# pylint: enable=g-import-not-at-top,wrong-import-position

__version__ = "0.1.0"

__all__ = [
    "CoderUnavailableError",
    "CompressionLogger",
    "CorruptFileError",
    "Distillation",
    "Frontier",
    "GroupPrior",
    "KernelDecoder",
    "LatentConv1D",
    "LatentConv2D",
    "LatentDense",
    "LatentDepthwiseConv2D",
    "LatentSeparableConv2D",
    "LilNetXModel",
    "MissingCustomObjectError",
    "NonFiniteError",
    "RateWarmup",
    "StopOnNonFinite",
    "compress_latents",
    "compressible",
    "compression_stats",
    "decompress_latents",
    "decompressed_model",
    "inspect_compressed",
    "load_compressed",
    "recode_compressed",
    "save_compressed",
]
