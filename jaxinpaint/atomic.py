"""Atomic file writes: a reader never sees half a file, and a failure
(Ctrl-C too) leaves the old file and no temporary one. Every file the
library writes outside orbax's checkpoints goes through here."""
import json
import os
from pathlib import Path


def write(path, write_fn):
  """`write_fn(tmp)` writes a file next to `path`, which then replaces `path`.
  Makes the folder if needed."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f'.{path.name}.tmp')
  try:
    write_fn(tmp)
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def write_text(path, content: str):
  """Writes `content` to `path` atomically, as UTF-8."""
  write(path, lambda tmp: Path(tmp).write_text(content, encoding='utf-8'))


def write_json(path, obj):
  """`obj` as indented JSON, atomically."""
  write_text(path, json.dumps(obj, indent=2) + '\n')
