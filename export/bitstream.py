"""Writes a trained LilNetX model as a compressed model file, or inspects one.

  python -m export.bitstream --workdir=RUN [--output=RUN/model.lnx] [--float16]
      [--fold_batch_norm [--batch_norm_bits=B]] [--coder=NAME]
  python -m export.bitstream --checkpoint=PATH.keras --output=model.lnx
      [--custom_objects=MODULE,...]
  python -m export.bitstream --inspect model.lnx
  python -m export.bitstream --recode=IN.lnx --coder=NAME --output=OUT.lnx

`--workdir` means RUN/model.keras, the latest model of a training run. The
file holds the range-coded latents, coding tables, decoders, float weights
and architecture (`lilnetx_tf.compressed.fileformat`); load it with
`lilnetx_tf.compressed.fileformat.load_compressed`. Two sizes are printed and never
mixed up: the latents alone (the paper's model size) and the whole file, each
also as a ratio against the float32 weights.

A model made of the user's own layers or functions, registered with
`keras.utils.register_keras_serializable`, is stored with them named by their
registered names; `--custom_objects=myapp.layers` names the modules that
define them, for loading the checkpoint (`export/custom_objects.py`), and
`load_compressed(path, custom_objects=...)` takes them back.

`--coder` names the range coder of the latents, which the file records:
`tensorflow-compression` (the default where it is installed) or
`constriction` (the default elsewhere, e.g. on TensorFlow 2.16+); both
decode to the same weights. A file needs its coder to load: `--recode`
writes an existing file's latents again with `--coder` (same tables and
weights, current format version), e.g. a tensorflow-compression file for a
stack without it; run it where the file's own coder is installed.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

import lilnetx_tf
from lilnetx_tf.compressed import coders
from lilnetx_tf.compressed import fileformat
from lilnetx_tf.compat import keras
from . import custom_objects

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Training run directory; exports RUN/model.keras.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "A LilNetX model saved in Keras format (*.keras).")
_OUTPUT = flags.DEFINE_string(
    "output", None, "The compressed file to write; default: RUN/model.lnx, or "
    "the checkpoint's path with the suffix .lnx.")
_FLOAT16 = flags.DEFINE_bool(
    "float16", False, "Store the float weights (biases, batch norm) as "
    "float16; kernels stay exact.")
_FOLD = flags.DEFINE_bool(
    "fold_batch_norm", False, "Store each batch norm layer as its "
    "inference-mode scale and offset (zero mean, unit variance): half its "
    "bytes, the same outputs to float32 rounding, no moving statistics to "
    "train on from.")
_BN_BITS = flags.DEFINE_integer(
    "batch_norm_bits", None, "With --fold_batch_norm: round each folded "
    "scale and offset vector to a power-of-two grid of this many binary "
    "places below its largest magnitude (about bits + 2 bits a value "
    "instead of 16 or 32; lossy: check the accuracy with export.tflite "
    "--check-samples).")
_INSPECT = flags.DEFINE_string(
    "inspect", None, "Check a compressed file and print its size breakdown "
    "instead of exporting.")
_CODER = flags.DEFINE_string(
    "coder", None, f"Range coder of the latents: {' or '.join(coders.CODERS)}"
    "; default: tensorflow-compression where it is installed, else "
    "constriction.")
_RECODE = flags.DEFINE_string(
    "recode", None, "Write this compressed file again with its latents coded "
    "by --coder, to --output (the same weights), instead of exporting.")


def _size_table(sizes):
  """The final size table: latents and whole file against float32."""
  rows = [
      ("latents (model size)", sizes["latent_bytes"],
       f"{sizes['latent_ratio']:.2f}x",
       f"{sizes['bits_per_latent']:.3f} bits/latent"),
      ("whole file", sizes["file_bytes"], f"{sizes['file_ratio']:.2f}x",
       f"float weights as {sizes['float_dtype']}"),
      ("float32 weights", sizes["float32_bytes"], "1.00x",
       f"{sizes['num_latents']:,} latents + {sizes['num_float_params']:,} "
       "float"),
  ]
  lines = [f"{'':<22}{'bytes':>14}  {'vs float32':>10}"]
  lines += [f"{name:<22}{n:>14,}  {ratio:>10}  {note}"
            for name, n, ratio, note in rows]
  lines.append(f"latents coded by the range coder {sizes['coder']}")
  return "\n".join(lines)


def _breakdown(info):
  """Per section and per group tables of `inspect_compressed`."""
  lines = [f"{'section':<28}{'offset':>12}{'bytes':>14}",
           f"{'preamble':<28}{0:>12,}{info['preamble_bytes']:>14,}"]
  lines += [f"{s['tag'] + ' ' + s['name']:<28}{s['offset']:>12,}"
            f"{s['bytes']:>14,}" for s in info["sections"]]
  lines += ["", f"{'group':<16}{'layers':>7}{'latents':>13}{'latent bytes':>14}"
            f"{'bits/latent':>13}{'table bytes':>13}{'decoder bytes':>15}"]
  lines += [f"{g['name']:<16}{len(g['layers']):>7}{g['num_latents']:>13,}"
            f"{g['latent_bytes']:>14,}{g['bits_per_latent']:>13.3f}"
            f"{g['table_bytes']:>13,}{g['decoder_bytes']:>15,}"
            for g in info["groups"]]
  return "\n".join(lines)


def _export():
  if (_WORKDIR.value is None) == (_CHECKPOINT.value is None):
    raise app.UsageError("Give exactly one of --workdir, --checkpoint (or "
                         "--inspect FILE).")
  if _WORKDIR.value is not None:
    checkpoint = os.path.join(_WORKDIR.value, "model.keras")
    output = _OUTPUT.value or os.path.join(_WORKDIR.value, "model.lnx")
  else:
    checkpoint = _CHECKPOINT.value
    output = _OUTPUT.value or os.path.splitext(checkpoint)[0] + ".lnx"
  if not os.path.isfile(checkpoint):
    sys.exit(f"error: no model at {checkpoint}")
  logging.info("Loading %s", checkpoint)
  objects = custom_objects.custom_objects()
  model = keras.models.load_model(checkpoint, compile=False,
                                  custom_objects=objects)
  if not isinstance(model, lilnetx_tf.LilNetXModel):
    sys.exit(f"error: {checkpoint} holds a {type(model).__name__}, not a "
             "LilNetXModel")
  try:
    coder = _CODER.value or coders.default_coder()
    logging.info("Range coding %d latents in %d groups with %s, writing %s",
                 model.num_latents, len(model.group_layers), coder, output)
    sizes = fileformat.save_compressed(
        model, output, float16=_FLOAT16.value, fold_batch_norm=_FOLD.value,
        batch_norm_bits=_BN_BITS.value, coder=coder)
  except (ValueError, coders.CoderUnavailableError) as e:
    sys.exit(f"error: {e}")
  logging.info("Wrote %s (%d bytes)", output, sizes["file_bytes"])
  print(f"wrote {output}")
  print(_size_table(sizes))


def _recode():
  if _OUTPUT.value is None:
    raise app.UsageError("--recode needs --output (the file to write).")
  if _WORKDIR.value or _CHECKPOINT.value or _INSPECT.value:
    raise app.UsageError("--recode takes no --workdir, --checkpoint or "
                         "--inspect.")
  try:
    sizes = fileformat.recode_compressed(_RECODE.value, _OUTPUT.value,
                                         _CODER.value)
  except (fileformat.CorruptFileError, coders.CoderUnavailableError,
          ValueError, OSError) as e:
    sys.exit(f"error: {e}")
  print(f"wrote {_OUTPUT.value}")
  print(_size_table(sizes))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}.")
  if _RECODE.value is not None:
    _recode()
    return
  if _INSPECT.value is None:
    _export()
    return
  if _WORKDIR.value or _CHECKPOINT.value or _OUTPUT.value or _CODER.value:
    raise app.UsageError("--inspect takes no --workdir, --checkpoint, "
                         "--output or --coder.")
  try:
    info = fileformat.inspect_compressed(_INSPECT.value)
  except (fileformat.CorruptFileError, OSError) as e:
    sys.exit(f"error: {e}")
  print(f"{_INSPECT.value}: LilNetX compressed model, format version "
        f"{info['sizes']['format_version']}"
        + (", weights only (no architecture: load it into the model built "
           "in code, load_compressed(path, into=model))"
           if info["sizes"]["weights_only"] else ""))
  print(_breakdown(info))
  print()
  print(_size_table(info["sizes"]))


def run():
  """The `lilnetx-export-bitstream` script (`python -m export.bitstream`)."""
  app.run(main)


if __name__ == "__main__":
  run()
