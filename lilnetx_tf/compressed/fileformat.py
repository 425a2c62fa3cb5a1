"""The compressed model file (`.lnx`): what a LilNetX model ships as.

`save_compressed` writes one self-contained file: the architecture, the
range-coded integer latents of every group with the tables they were coded
with, the decoders, and the weights that stay float. `load_compressed` returns
a plain Keras model (stock layers) whose kernels are decoded with
`decoders.decode_kernel`, so they equal the trained model's
`layer.decoded_kernel()` bit for bit. The file is data only: no pickle, no
code; the architecture may name only stock Keras classes, the library's
own layers by their registered Keras name (`lilnetx_tf>ChannelPad`), common
TensorFlow ops (`tf_ops`), and the user's registered classes and functions,
which loading takes from the caller (`custom_objects`; see `architecture`).
Reading checks every field before it allocates (see
`sections`), and any problem is a `CorruptFileError`; any other exception is
a bug of the reader. The header names the latents' range coder (`coders`); a
file whose coder is missing raises `CoderUnavailableError` on loading (it
still inspects), and `recode_compressed` converts it to another coder.

A weights-only file (`save_compressed(..., weights_only=True)`) is all of
the above but the architecture: for a model whose architecture is code (a
subclassed `keras.Model`, layers of the user's own classes), which the user
builds, and `load_compressed(path, into=model)` fills by layer name
(`lilnetx_tf.method.named_weights`). `into=` also takes the weights of a
file with an architecture. Building or filling the model from the checked
file is `reading`'s; writing the bytes is `writing`'s.

Byte layout, all integers little-endian:

  preamble   8 bytes  magic b"\\x89LNX\\r\\n\\x1a\\n"
             4 bytes  uint32 format version (`FORMAT_VERSION`)
  section    4 bytes  ASCII tag
  (repeated) 8 bytes  uint64 payload length n
             4 bytes  uint32 CRC-32 (zlib) of the tag, length and payload
             n bytes  payload

The sections, in this order, with nothing after the last one:

  HEAD    zlib (RFC 1950) stream of the UTF-8 JSON header, which inflates
          to at most `MAX_HEADER_BYTES` (16 MiB); below. From version 5 on
          the stream is deflated with the preset dictionary
          `dictionary.HEADER_DICTIONARY` (FDICT). (Format version 1, still
          read, stored the JSON itself.)
  per group, in header order:
    TABL  zlib (RFC 1950) stream of unsigned LEB128 numbers: per position
          the precision p, the zigzag-coded offset (first value), the count
          n of values, then their n frequencies (0 for a value that does not
          occur); the overflow escape gets the rest of 2**p, at least 1.
          These are the range-coding tables of tensorflow-compression (per
          position: -p, then the CDF from 0 up to 2**p, `cdf_length` values
          in all). (Versions 1 and 2 stored int32 `cdf` then int32
          `cdf_offset`, deflated, CDFs strictly increasing.)
    DECO  the decoder matrix, `positions` x `positions`, row-major: float32;
          or, if the group's header entry has `decoder: [e, k]` (version 5),
          its float32 scale s, then the Rice code (`rice`, parameter k) of
          the integers q of the unit matrix, which is `q * 2**e`; the matrix
          is the float32 product `s * float32(q * 2**e)`.
    LATS  the range-coded integer latents (`codec.encode_symbols`, with
          the header's `coder`): the group's layers in header order, each
          as its slice matrix (`groups.to_slices`: rows of `positions`
          symbols), concatenated. tensorflow-compression's bytes are its
          range coder's string; constriction's are its RangeEncoder's
          32-bit words, little-endian, position by position (`coders`).
  FLTS    every other weight, in header order, C order, concatenated: as
          `float_dtype`, or, if its header entry has `grid: [e, k, n]`
          (version 5), as n bytes of the Rice code of integers q, the
          weight being `float32(q * 2**e)` (`grid: [e, k, n, o]`, version
          6: of integers q - o); if it has `fill: x` (version 6), as no
          bytes, every element being the float32 x.

The header:

  format_version  equal to the preamble's.
  float_dtype     "float32" or "float16": how FLTS stores the float weights
                  that are on no grid.
  coder           (version 7) "tensorflow-compression" or "constriction":
                  the range coder of every LATS section. Versions 1 to 6
                  have none and mean tensorflow-compression.
  groups          [{name, positions, cdf_length, layers, weights, shapes[,
                  decoder]}]: per kernel group its layers in coding order,
                  the weight index of each one's kernel (0, or 1 for the
                  pointwise kernel of a SeparableConv2D; absent before
                  version 4, meaning 0), the kernel shapes, and how DECO
                  stores the decoder (above).
  float_params    [{layer, index, shape[, grid | fill]}]: the FLTS tensors,
                  weight `index` of layer `layer` (before version 5 also
                  `name` and `dtype`, "float32"). The kernels named by
                  `groups` are decoded from the latents with the group's
                  matrix instead.
  architecture    from version 8 on, null in a weights-only file (a version
                  7 reader takes a null architecture for a damaged file);
                  else the Keras model config (`model.to_json()`) of
                  `decompressed_model(model)`, from version 5 on without
                  what Keras rebuilds by itself
                  (`architecture.compact_architecture`), from version 6 on
                  also without the `name` of a functional model's layer
                  entry, which is its config's `name`
                  (`architecture.without_layer_names`).

Weights on grids are those `LilNetXModel(grid_bits=...)` trains on
(`lilnetx_tf.method.grid`: the decoders' unit matrices and the latent
layers' biases), and any other float weight that happens to lie on a grid
of at most 16 places; the writer finds the coarsest grid of each tensor and
uses it where it is shorter. A tensor whose elements are all one finite value
(e.g. the zero means and unit variances of folded batch norm) is a `fill`
where the number's JSON is shorter than the tensor's floats.

A reader refuses a newer format version and reads every older one; a new
version number is due whenever a reader of the old one would misread the file
(version 8's one change is that the architecture may be null; every file is
written as `FORMAT_VERSION`).
"""

from lilnetx_tf.atomic import atomic_write
from lilnetx_tf.compressed import coders
from lilnetx_tf.compressed import reading
from lilnetx_tf.compressed import sections
from lilnetx_tf.compressed import writing
from lilnetx_tf.compressed.custom_objects import MissingCustomObjectError
from lilnetx_tf.compressed.sections import CorruptFileError
from lilnetx_tf.compressed.sections import FORMAT_VERSION
from lilnetx_tf.compressed.sections import MAGIC
from lilnetx_tf.compressed.sections import MAX_HEADER_BYTES
from lilnetx_tf.method import grid
from lilnetx_tf.method.model import LilNetXModel

__all__ = [
    "CoderUnavailableError",
    "CorruptFileError",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_HEADER_BYTES",
    "MissingCustomObjectError",
    "inspect_compressed",
    "load_compressed",
    "load_compressed_bytes",
    "recode_compressed",
    "save_compressed",
]

CoderUnavailableError = coders.CoderUnavailableError

# -- Writing (the bytes: `writing`) -------------------------------------------


def save_compressed(model, path, *, float16=False, fold_batch_norm=False,
                    batch_norm_bits=None, coder=None, weights_only=False):
  """Writes a `LilNetXModel` as a compressed model file, atomically.

  Args:
    model: A trained `LilNetXModel`.
    path: The output file (conventionally `*.lnx`). It is written to a
      temporary file in the same directory, synced, then renamed to `path`.
    float16: Store the float weights (biases, batch norm, ...) as float16.
      Kernels are exact either way: they come from the integer latents.
    fold_batch_norm: Store each batch norm layer as its inference-mode
      scale and offset, with zero mean and unit variance
      (`floats.fold_batch_norm_statistics`): half its bytes, the same
      inference outputs to float32 rounding, no moving statistics to resume
      training with.
    batch_norm_bits: With `fold_batch_norm`, round each folded scale and
      offset vector to a power-of-two grid of this many binary places (1 to
      16) below its largest magnitude, stored in about that many bits plus
      two a value: lossy (check the accuracy, e.g. with `python -m
      export.tflite --compressed=... --check-samples=N`). None: exact.
    coder: The range coder of the latents (`coders.CODERS`); None:
      `coders.default_coder()`. Either decodes to the same weights.
    weights_only: Leave the architecture out, for a model whose
      architecture is code (a subclassed network, layers of the user's own
      classes): the file's weights go into the plain model built in code,
      `load_compressed(path, into=model)`, matched by layer name.

  Returns:
    The file's sizes (`inspect_compressed(path)["sizes"]`): `latent_bytes`,
    the range-coded latents alone (the paper's model size); `file_bytes`, the
    whole file; `float32_bytes`, all weights of the decompressed model in
    float32; `latent_ratio` and `file_ratio`, float32_bytes over each; and
    `num_latents`, `num_float_params`, `bits_per_latent`, `float_dtype`,
    `format_version`, `coder`, `weights_only`.

  Raises:
    TypeError: if `model` is not a `LilNetXModel`.
    ValueError: if the model cannot be stored (e.g. it has a `Lambda` layer
      or a class of the user's not registered with Keras, or without
      `weights_only` a subclassed network), if two of its layers have the
      same name, for `batch_norm_bits` out of range or without
      `fold_batch_norm`, or an unknown coder.
    CoderUnavailableError: if the coder is not installed.

  Usage:

    sizes = save_compressed(lilnetx_model, "model.lnx", fold_batch_norm=True)
    print(sizes["latent_bytes"], sizes["file_bytes"], sizes["file_ratio"])
    save_compressed(lilnetx_model, "weights.lnx", weights_only=True)
  """
  if not isinstance(model, LilNetXModel):
    raise TypeError(f"Expected a LilNetXModel, got {type(model).__name__}.")
  if batch_norm_bits is not None:
    if not fold_batch_norm:
      raise ValueError("batch_norm_bits rounds the folded batch norm: give "
                       "fold_batch_norm=True too.")
    if (isinstance(batch_norm_bits, bool) or
        not isinstance(batch_norm_bits, int) or
        not 1 <= batch_norm_bits <= grid.MAX_GRID_BITS):
      raise ValueError(f"batch_norm_bits must be an integer in [1, "
                       f"{grid.MAX_GRID_BITS}], got {batch_norm_bits!r}.")
  coder = coders.resolve(coder)  # Before the work.
  chunks = writing.model_chunks(model, "float16" if float16 else "float32",
                                fold_batch_norm, batch_norm_bits, coder,
                                weights_only)
  atomic_write(path, chunks)
  return _describe(sections.parse(b"".join(chunks)))["sizes"]


# -- Reading (the model: `reading`) -------------------------------------------


def _read(path, function):
  """`function(bytes of path)`, with the path in any `CorruptFileError`."""
  with open(path, "rb") as f:
    data = f.read()
  try:
    return function(data)
  except CorruptFileError as e:
    raise CorruptFileError(e.section, e.reason, path=path) from e.__cause__
  except CoderUnavailableError as e:  # The message names the file to recode.
    raise CoderUnavailableError(e.coder, file=path) from None


def load_compressed(path, custom_objects=None, *, into=None):
  """Loads a compressed model file as a plain Keras model.

  Args:
    path: A file written by `save_compressed`.
    custom_objects: The user's classes and functions the architecture may
      name (layers, activations, ... registered with
      `keras.utils.register_keras_serializable`, which the file names by
      their registered name), as for Keras: a dict from registered name
      ("myapp>MyLayer") or plain name ("MyLayer") to the class or function.
      Only these, stock Keras and the library's own layers are rebuilt.
    into: Optional: a built plain Keras model to fill with the file's
      weights instead of building the file's architecture; needed for a
      weights-only file. The plain form of the saved model, as the user's
      code builds it: stock `Conv2D`, `Dense`, ... layers where the saved
      network has latent ones (a model holding latent layers is refused).
      Weights are matched by layer name (`named_weights`: layers nested in
      subclassed models and layers included); each layer's weight count,
      shapes and dtypes are checked first, and nothing is set unless all
      match.

  Returns:
    An uncompiled functional/Sequential `keras.Model` of stock layers,
    whose kernels are the decoded integer latents, bit for bit as in
    training, and whose other weights are the stored float weights; or
    `into`, so filled.

  Raises:
    CorruptFileError: if the file is not a valid compressed model file
      (truncated, damaged, foreign, of a newer format version, or with an
      architecture that is not allowed); `section` and `reason` say where and
      why.
    CoderUnavailableError: if the file's range coder is not installed (an
      ImportError; the message says what to install, or how to recode the
      file on a stack that has it).
    TypeError: if `into` is not a plain Keras model, or `custom_objects`
      not a dict.
    ValueError: for a weights-only file without `into`, or an `into` whose
      layers, weight counts, shapes or dtypes differ from the file's (the
      message names the layer and both).
    MissingCustomObjectError: if the architecture names a class or function
      of the user's that `custom_objects` lacks (a ValueError; the message
      says what to pass).
    OSError: if the file cannot be read.

  Usage:

    plain = load_compressed("model.lnx")     # a stock Keras model
    net = MyNet()                            # weights only: your model,
    net(x_test[:1])                          # built
    load_compressed("weights.lnx", into=net)
  """
  return _read(path, lambda data: reading.loaded_model(
      data, into, f"file {str(path)!r}", custom_objects))


def load_compressed_bytes(data, custom_objects=None, *, into=None):
  """Loads a compressed model from the bytes of a file, e.g. downloaded.

  Args:
    data: The bytes of a file written by `save_compressed`.
    custom_objects: As `load_compressed`'s.
    into: As `load_compressed`'s.

  Returns:
    The model, as `load_compressed` returns it.

  Raises:
    CorruptFileError: as `load_compressed`.
    CoderUnavailableError: as `load_compressed`.
    TypeError: as `load_compressed`.
    ValueError: as `load_compressed`.
    MissingCustomObjectError: as `load_compressed`.
  """
  return reading.loaded_model(data, into, "the file", custom_objects)


def _describe(parsed):
  """Size breakdown of a parsed file."""
  header, groups = parsed["header"], parsed["groups"]
  num_latents = sum(g["coded"].num_latents for g in groups)
  num_floats = sum(a.size for a in parsed["floats"])
  latent_bytes = sum(len(g["coded"].data) for g in groups)
  float32_bytes = 4 * (num_latents + num_floats)
  sizes = dict(
      format_version=header["format_version"],
      float_dtype=header["float_dtype"], coder=header["coder"],
      weights_only=header["architecture"] is None, num_latents=num_latents,
      num_float_params=num_floats, latent_bytes=latent_bytes,
      file_bytes=parsed["file_bytes"], float32_bytes=float32_bytes,
      latent_ratio=float32_bytes / max(latent_bytes, 1),
      file_ratio=float32_bytes / parsed["file_bytes"],
      bits_per_latent=8 * latent_bytes / num_latents)
  group_sizes = []
  for g in groups:
    coded = g["coded"]
    group_sizes.append(dict(
        name=coded.group, layers=list(coded.layers), weights=g["weights"],
        positions=coded.positions,
        num_latents=coded.num_latents, latent_bytes=len(coded.data),
        bits_per_latent=8 * len(coded.data) / coded.num_latents,
        table_bytes=g["table_bytes"], decoder_bytes=g["decoder_bytes"]))
  return dict(sizes=sizes, groups=group_sizes,
              sections=[dict(s) for s in parsed["sections"]],
              preamble_bytes=sections.PREAMBLE.size)


def inspect_compressed(path):
  """Checks a compressed model file and breaks its size down.

  Everything but range decoding and building the model is checked (CRCs,
  lengths, header, tables), so a file that passes is well formed; the file's
  range coder need not be installed.

  Args:
    path: A file written by `save_compressed`.

  Returns:
    A dict with
    - `sizes`: totals, as returned by `save_compressed`;
    - `groups`: per group its `name`, `layers`, `positions`, `num_latents`,
      `latent_bytes`, `bits_per_latent`, `table_bytes` and `decoder_bytes`
      (payloads);
    - `sections`: per section its `tag`, `name` (e.g. "latents[conv3x3]"),
      `offset` and `bytes` (with its 16-byte section header);
    - `preamble_bytes`. The sections and the preamble add up to the file.

  Raises:
    CorruptFileError: as `load_compressed`.
    OSError: if the file cannot be read.

  Usage:

    info = inspect_compressed("model.lnx")
    print(info["sizes"]["format_version"], info["sizes"]["coder"])
    for group in info["groups"]:
      print(group["name"], group["latent_bytes"], group["bits_per_latent"])
  """
  return _read(path, lambda data: _describe(sections.parse(data)))


def recode_compressed(src_path, dst_path, coder=None):
  """Writes a compressed file's latents again with another range coder.

  The tables, decoders, float weights and architecture are kept; the latents
  are decoded with the file's coder and coded again with `coder` on the same
  tables: the new file (format version `FORMAT_VERSION`) loads to the same
  weights bit for bit. For a stack that lacks the file's coder, e.g. a
  tensorflow-compression file for TensorFlow 2.16+.

  Args:
    src_path: A file written by `save_compressed` (any readable version).
    dst_path: The file to write, atomically (may be `src_path`).
    coder: The new coder (`coders.CODERS`); None: `coders.default_coder()`.

  Returns:
    The new file's sizes (as `save_compressed`'s).

  Raises:
    CorruptFileError: as `load_compressed`, for the source file.
    CoderUnavailableError: if the source's or the new coder is not installed.
    ValueError: for an unknown coder.
  """
  coder = coders.resolve(coder)
  chunks = _read(src_path, lambda data: writing.recoded_chunks(data, coder))
  atomic_write(dst_path, chunks)
  return _describe(sections.parse(b"".join(chunks)))["sizes"]
