"""Tests of the range coders by name (`lilnetx_tf.compressed.coders`).

The invariants: each coder decodes what it coded, both decode the same
tables to the same latents, coding costs the latents' entropy plus a little,
what a table cannot code is refused before coding, a missing coder is a
`CoderUnavailableError` (not a corrupt file), and tensorflow-compression's
bytes are those of the files it always wrote; and `.lnx` files travel
between stacks: each version 7 golden file loads to its recorded weights
wherever its coder is installed. Files of versions 1 to 6, recoding, the
CLI: test_fileformat.py.
"""

import hashlib
import json
import pathlib

import constriction
import numpy as np
import pytest

from lilnetx_tf import compat
from lilnetx_tf.compressed import codec
from lilnetx_tf.compressed import coders
from lilnetx_tf.compressed import fileformat
from lilnetx_tf.compressed import sections
from lilnetx_tf.compressed.errors import CorruptFileError

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
TFC, CONSTRICTION = coders.TENSORFLOW_COMPRESSION, coders.CONSTRICTION
# Version 7 golden files: golden_v6.lnx's model, one file per range coder.
GOLDEN_V7 = {TFC: DATA / "golden_v7_tfc.lnx",
             CONSTRICTION: DATA / "golden_v7_constriction.lnx"}


def _matrices():
  """(name, int64 (rows, positions) matrix): shapes latents take, and edges."""
  rng = np.random.default_rng(0)
  laplace = np.round(rng.laplace(0.0, 1.5, (3000, 9)))
  laplace[rng.random(3000) < 0.7] = 0  # Zero slices, as training makes.
  yield "sparse laplace 3x3", laplace.astype(np.int64)
  yield "wide laplace 1x1", np.round(rng.laplace(0, 40, (5000, 1))).astype(
      np.int64)
  yield "uniform, far from 0", rng.integers(-70000, -69000, (400, 4))
  spiky = np.zeros((20000, 2), np.int64)
  spiky[::997, 0] = rng.integers(-3, 4, 21)  # A tiny share: far below a bit.
  yield "nearly constant", spiky
  constant = np.full((50, 3), 7, np.int64)
  constant[:, 1] = rng.integers(0, 2, 50)
  yield "constant columns", constant
  gaps = rng.choice([-9, 0, 1, 40], (1000, 5), p=[0.1, 0.6, 0.2, 0.1])
  yield "values with gaps (frequency 0 between)", gaps
  yield "one row", rng.integers(-5, 5, (1, 25))


@pytest.mark.parametrize("name, symbols", list(_matrices()))
def test_both_coders_decode_random_tables_to_the_symbols(name, symbols):
  """Either coder: the symbols back, near their entropy; tfc = constriction."""
  cdf, offsets, _ = codec.histogram_tables(symbols)
  rows = symbols.shape[0]
  entropy = codec.empirical_entropy_bits(symbols) / 8
  decoded = {}
  for coder in coders.available_coders():
    data = coders.encode(coder, symbols, cdf, offsets)
    decoded[coder] = coders.decode(coder, data, rows, cdf, offsets)
    assert decoded[coder].dtype == np.int32, name
    np.testing.assert_array_equal(decoded[coder], symbols, err_msg=name)
    # Tables fitted to the columns: within 2% of the entropy, plus the
    # coder's last words (constriction pads to 32-bit words).
    assert entropy - 8 <= len(data) <= 1.02 * entropy + 12, (name, coder)
    # The reader's bound on the bytes a section needs holds for real data.
    least = rows * np.sum(coders.fewest_bits(coder, cdf, offsets))
    assert least <= 8 * len(data) + 64, (name, coder)
  assert CONSTRICTION in decoded  # On every stack.
  if TFC in decoded:
    np.testing.assert_array_equal(decoded[TFC], decoded[CONSTRICTION])


def test_constriction_codes_a_single_value_position_in_no_bits():
  symbols = np.full((1000, 4), -3, np.int64)
  cdf, offsets, freqs = codec.histogram_tables(symbols)
  assert all(len(f) == 1 for f in freqs)
  assert coders.encode(CONSTRICTION, symbols, cdf, offsets) == b""
  np.testing.assert_array_equal(
      coders.decode(CONSTRICTION, b"", 1000, cdf, offsets), symbols)
  # One informative column among them costs its own bits only.
  symbols[::2, 2] = 5
  cdf, offsets, _ = codec.histogram_tables(symbols)
  data = coders.encode(CONSTRICTION, symbols, cdf, offsets)
  assert 0 < len(data) <= 1000 / 8 + 8
  np.testing.assert_array_equal(
      coders.decode(CONSTRICTION, data, 1000, cdf, offsets), symbols)


@pytest.mark.parametrize("coder", [
    pytest.param(TFC, marks=pytest.mark.needs_tfc), CONSTRICTION])
def test_symbols_a_table_cannot_code_are_refused(coder):
  """Outside the table's range, of frequency 0, not integers, misshapen."""
  cdf, offsets = codec.tables_from_frequencies(
      [np.array([3, 0, 5]), np.array([1, 1])], [-1, 10], 8)
  good = np.array([[-1, 10], [1, 11]])
  assert coders.encode(coder, good, cdf, offsets)
  cases = {
      "below": ([[-2, 10]], "Symbol -2 at position 0 is outside its "
                "range-coding table, which covers -1 to 1"),
      "above": ([[1, 12]], "Symbol 12 at position 1 is outside its "
                "range-coding table, which covers 10 to 11"),
      "frequency 0": ([[0, 10]], "Symbol 0 at position 0 has frequency 0"),
      "fraction": ([[0.5, 10.0]], "not all integers"),
      "nan": ([[np.nan, 10.0]], "not all integers"),
      "shape": ([[1, 10, 10]], "Expected symbols of shape (rows, 2)"),
  }
  for name, (symbols, message) in cases.items():
    with pytest.raises(ValueError) as raised:
      coders.encode(coder, np.array(symbols), cdf, offsets)
    assert message in str(raised.value), name
  # Integer-valued floats are integers (the rounded latents are float32).
  assert coders.encode(coder, good.astype(np.float32), cdf, offsets) == (
      coders.encode(coder, good, cdf, offsets))


def test_constriction_refuses_data_it_did_not_write():
  rng = np.random.default_rng(1)
  symbols = rng.integers(0, 6, (500, 3))
  cdf, offsets, _ = codec.histogram_tables(symbols)
  data = coders.encode(CONSTRICTION, symbols, cdf, offsets)
  cases = {
      "not words": (data[:-1], "not whole 32-bit words"),
      "words left over": (data + bytes(16), "does not end where"),
      "too few rows read": (data, "does not end where"),
  }
  for name, (bad, message) in cases.items():
    rows = 400 if name == "too few rows read" else 500
    with pytest.raises(coders.DecodeError, match=message):
      coders.decode(CONSTRICTION, bad, rows, cdf, offsets)
  assert issubclass(coders.DecodeError, ValueError)
  assert codec.DecodeError is coders.DecodeError
  # A value of frequency 0 is never coded (`encode` refuses it), so decoding
  # one is an error: constriction itself gives it the least probability.
  freq = np.array([5, 0, 7])
  cdf, offsets = codec.tables_from_frequencies([freq], [-1], 8)
  with pytest.raises(ValueError, match="frequency 0"):
    coders.encode(CONSTRICTION, np.array([[0]]), cdf, offsets)
  encoder = constriction.stream.queue.RangeEncoder()
  encoder.encode(np.array([0, 1, 2], np.int32),
                 constriction.stream.model.Categorical(
                     freq.astype(np.float64), perfect=False))
  data = encoder.get_compressed().astype("<u4").tobytes()
  with pytest.raises(coders.DecodeError, match="frequency 0"):
    coders.decode(CONSTRICTION, data, 3, cdf, offsets)


def test_coder_names_and_defaults(monkeypatch):
  assert coders.CODERS == (TFC, CONSTRICTION)
  expected = TFC if compat.tfc is not None else CONSTRICTION
  assert coders.default_coder() == expected
  assert coders.available_coders()[0] == expected
  for call in (lambda: coders.require("zstd"),
               lambda: codec.encode_symbols(np.zeros((1, 1)),
                                            *codec.histogram_tables(
                                                np.zeros((1, 1)))[:2],
                                            coder="zstd")):
    with pytest.raises(ValueError, match="Unknown range coder 'zstd'; known: "
                       "tensorflow-compression, constriction"):
      call()
  # The default follows what is installed.
  real = coders.coder_module
  for missing, default in ((TFC, CONSTRICTION), (CONSTRICTION, TFC)):
    monkeypatch.setattr(coders, "coder_module", lambda c, m=missing: None if (
        c == m) else real(c))
    if default in coders.available_coders():
      assert coders.default_coder() == default
    assert missing not in coders.available_coders()
  monkeypatch.setattr(coders, "coder_module", lambda c: None)
  with pytest.raises(coders.CoderUnavailableError):
    coders.default_coder()


@pytest.mark.parametrize("coder", coders.CODERS)
def test_a_missing_coder_says_what_to_install_and_run(coder, monkeypatch):
  real = coders.coder_module
  monkeypatch.setattr(coders, "coder_module",
                      lambda c: None if c == coder else real(c))
  symbols = np.array([[0, 1], [1, 1]])
  cdf, offsets, _ = codec.histogram_tables(symbols)
  for call in (lambda: codec.encode_symbols(symbols, cdf, offsets, coder),
               lambda: codec.decode_symbols(b"", 2, cdf, offsets, coder)):
    with pytest.raises(coders.CoderUnavailableError) as raised:
      call()
    error = raised.value
    assert isinstance(error, ImportError)
    assert not isinstance(error, (ValueError, CorruptFileError))
    assert error.coder == coder and error.file is None
    assert error.name == {TFC: "tensorflow_compression",
                          CONSTRICTION: "constriction"}[coder]
    message = str(error)
    assert f"The range coder {coder!r} is not installed" in message
    assert f"pip install {error.package}" in message
    other = TFC if coder == CONSTRICTION else CONSTRICTION
    assert (f"python -m export.bitstream --recode=IN.lnx --coder={other} "
            "--output=OUT.lnx") in message


@pytest.mark.needs_tfc
def test_tensorflow_compression_writes_the_bytes_it_always_wrote():
  """golden_v6.lnx's latents, coded again: its LATS bytes, exactly."""
  data = (ROOT / "tests" / "data" / "golden_v6.lnx").read_bytes()
  parsed = sections.parse(data)
  assert len(parsed["groups"]) == 5
  for group in parsed["groups"]:
    coded = group["coded"]
    assert coded.coder == TFC
    rows = coded.num_latents // coded.positions
    symbols = coders.decode(TFC, coded.data, rows, coded.cdf,
                            coded.cdf_offset)
    assert coders.encode(TFC, symbols, coded.cdf, coded.cdf_offset) == (
        coded.data)
    # And constriction decodes its own coding of them alike.
    again = coders.encode(CONSTRICTION, symbols, coded.cdf, coded.cdf_offset)
    np.testing.assert_array_equal(coders.decode(
        CONSTRICTION, again, rows, coded.cdf, coded.cdf_offset), symbols)


def test_the_reader_bound_of_constriction_is_a_bound():
  """`fewest_bits`: at or below what the most probable value really costs."""
  for share in (0.5, 0.9, 0.999, 1 - 2**-20):
    freq = np.array([round(share * 2**16), 2**16 - 1 - round(share * 2**16)])
    freq = np.maximum(freq, 1)
    cdf, offsets = codec.tables_from_frequencies([freq], [0], 16)
    symbols = np.zeros((200000, 1), np.int64)
    data = coders.encode(CONSTRICTION, symbols, cdf, offsets)
    least = 200000 * coders.fewest_bits(CONSTRICTION, cdf, offsets)[0]
    assert least <= 8 * len(data) + 64, share
    # And not far below: the bound refuses what could not hold the rows.
    assert 8 * len(data) <= 1.01 * least + 64, share


def _golden_entries():
  return json.loads((DATA / "golden.json").read_text())["files"]


def _weights_sha256(model):
  """SHA-256 of the weights, float32 little-endian, as golden.json has it."""
  digest = hashlib.sha256()
  for w in model.weights:
    digest.update(np.ascontiguousarray(w.numpy(), "<f4").tobytes())
  return digest.hexdigest()


def _without_coder(monkeypatch, missing):
  """Makes the coder `missing` look uninstalled (`coders.coder_module`)."""
  real = coders.coder_module
  monkeypatch.setattr(coders, "coder_module",
                      lambda coder: None if coder == missing else real(coder))


def _assert_unavailable(error, coder, path):
  """A `CoderUnavailableError` that says what to install or run."""
  assert isinstance(error, ImportError)
  assert not isinstance(error, (CorruptFileError, ValueError))
  assert error.coder == coder and str(error.file) == str(path)
  message = str(error)
  assert f"range coder {coder!r}" in message
  assert f"pip install {error.package}" in message
  assert error.package.split("==")[0] == coder  # The pip package's name.
  assert f"python -m export.bitstream --recode={path} --coder=" in message
  assert "--output=OUT.lnx" in message


@pytest.mark.parametrize("coder", coders.CODERS)
def test_version_7_golden_files_load_with_their_coder_or_say_what_is_missing(
    coder, monkeypatch):
  """Each loads exactly where its coder is installed, else says so."""
  [entry] = [e for e in _golden_entries()
             if e.get("coder") == coder and e["format_version"] == 7]
  path = GOLDEN_V7[coder]
  assert entry["file"] == path.name and entry["format_version"] == 7
  assert sections.parse(path.read_bytes())["header"]["coder"] == coder
  # Same model as version 6's golden file, whichever coder.
  assert entry["weights_sha256"] == [e for e in _golden_entries() if e[
      "file"] == "golden_v6.lnx"][0]["weights_sha256"]
  if coder in coders.available_coders():
    loaded = fileformat.load_compressed(path)
    assert len(loaded.weights) == entry["num_weights"]
    assert _weights_sha256(loaded) == entry["weights_sha256"]
    x = np.random.default_rng(7).random((2, 8, 8, 3), dtype=np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), entry["outputs"],
                               rtol=1e-5, atol=1e-6)
  else:  # The stack without it: the real absence.
    with pytest.raises(coders.CoderUnavailableError) as raised:
      fileformat.load_compressed(path)
    _assert_unavailable(raised.value, coder, path)
  _without_coder(monkeypatch, coder)
  assert coder not in coders.available_coders()
  with pytest.raises(fileformat.CoderUnavailableError) as raised:
    fileformat.load_compressed(path)
  _assert_unavailable(raised.value, coder, path)
  with pytest.raises(coders.CoderUnavailableError):
    fileformat.load_compressed_bytes(path.read_bytes())
  # Inspecting decodes nothing: the sizes, coder included, without it.
  sizes = fileformat.inspect_compressed(path)["sizes"]
  assert sizes["coder"] == coder and sizes["format_version"] == 7
  assert sizes["file_bytes"] == path.stat().st_size
