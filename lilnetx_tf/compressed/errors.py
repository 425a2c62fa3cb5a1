"""The error of a malformed compressed file, and how readers raise it.

`CorruptFileError` names the section a problem is in. Readers raise it
themselves for what their checks find (`fail`), and turn into it only the
exception types a library raises on the malformed input they hand it
(`reading`): any other exception is a bug and propagates as it is.
"""

import contextlib
import zlib

__all__ = ["CorruptFileError", "fail", "inflate", "reading"]


class CorruptFileError(ValueError):
  """A compressed model file is damaged, foreign, newer or not allowed.

  Attributes:
    section: Where the problem is (e.g. "preamble", "header",
      "latents[conv3x3]", "architecture").
    reason: What is wrong.
    path: The file, when known.
  """

  def __init__(self, section, reason, path=None):
    self.section = section
    self.reason = reason
    self.path = path
    where = f" {str(path)!r}" if path is not None else ""
    super().__init__(
        f"Corrupt LilNetX file{where}: section {section}: {reason}.")


def fail(section, reason):
  """Raises `CorruptFileError(section, reason)`."""
  raise CorruptFileError(section, reason)


@contextlib.contextmanager
def reading(section, errors):
  """Turns the `errors` raised while reading `section` into `CorruptFileError`.

  Args:
    section: The section being read, for the error.
    errors: The exception types (a tuple) that the code in the block raises on
      malformed input it is given; keep the block to that code. Any other
      exception propagates unchanged: it is a bug, not a damaged file.

  Yields:
    Nothing.
  """
  try:
    yield
  except CorruptFileError:
    raise
  except errors as e:
    raise CorruptFileError(section, f"{type(e).__name__}: {e}"[:600]) from e


def inflate(payload, max_bytes, section, zdict=b""):
  """Inflates one complete zlib stream of at most `max_bytes` bytes.

  Never inflates more than `max_bytes + 1` bytes, whatever the stream claims.
  `zdict` is the preset dictionary the stream was deflated with, if any.
  """
  inflater = zlib.decompressobj(zdict=zdict)
  with reading(section, (zlib.error,)):
    raw = inflater.decompress(payload, max_bytes + 1)
  if len(raw) > max_bytes:
    fail(section, f"inflates to over {max_bytes} bytes")
  if not inflater.eof or inflater.unused_data:
    fail(section, "not one complete zlib stream")
  return raw
