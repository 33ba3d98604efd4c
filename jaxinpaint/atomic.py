"""Atomic file writes: a reader never sees half a file, and a failure
(Ctrl-C too) leaves the old file and no temporary one. Every file the
library writes outside orbax's checkpoints goes through here."""
import contextlib
import itertools
import json
import os
from pathlib import Path

_numbers = itertools.count()  # of this process's temporary files


def _temporary_file(folder: Path) -> Path:
  """A new empty file in `folder`, with a short name: any name that fits
  there, the longest included, can be written through it (a name derived
  from the target's, longer than it, would not fit). O_EXCL: no other
  thread or process (several hosts may share OUT) gets the same one; the
  mode is the umask's, as for any new file."""
  while True:
    tmp = folder / f'.tmp-{os.getpid()}-{next(_numbers)}'
    try:
      os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
      return tmp
    except FileExistsError:
      continue


def write(path, write_fn):
  """`write_fn(tmp)` writes the file `tmp` (it exists, empty) next to
  `path`, which it then replaces. Makes the folder if needed."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = _temporary_file(path.parent)
  try:
    write_fn(tmp)
    os.replace(tmp, path)
  except BaseException:
    # A folder that turned read-only keeps it: the error that stopped the
    # write is the one to report.
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def write_text(path, content: str):
  """Writes `content` to `path` atomically, as UTF-8."""
  write(path, lambda tmp: Path(tmp).write_text(content, encoding='utf-8'))


def write_json(path, obj):
  """`obj` as indented JSON, atomically."""
  write_text(path, json.dumps(obj, indent=2) + '\n')
