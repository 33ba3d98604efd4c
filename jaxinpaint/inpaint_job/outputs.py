"""Outputs of a completion run, checked before any work, so that nothing
written is lost or overwritten silently: their layout, the checks, the lock
on OUT, the run's recorded settings (run.json) and what --resume finds
finished. `writer.BatchWriter` writes them batch by batch.

The layout under OUT: `<name>.png` (blended), `raw/<name>.png` (the overlay
before blending), `grid.png`, and with ground truth `metrics.csv` and
`summary.json`. No JAX here: the checks run before any computation.
"""
import json
import os
import socket
from pathlib import Path

import numpy as np
from PIL import Image

from jaxinpaint import data
from jaxinpaint.data import masks
from jaxinpaint.errors import InputError
from jaxinpaint.inpaint_job.inputs import inspect_image, names_list, note

GRID_FILE, RAW_DIR = 'grid.png', 'raw'
METRICS_FILE, SUMMARY_FILE = 'metrics.csv', 'summary.json'
RUN_FILE = 'run.json'  # the settings the images were completed with
LOCK_FILE = '.lock'  # held by the run writing OUT (see OutLock)
METRIC_KEYS = ('mse', 'psnr', 'ssim', 'hole_mse')
# How a refused --resume ends: what the user can do instead.
START_ANEW = 'start anew with --overwrite or another --out'


def text(name) -> str:
  """A file name or path as text that any UTF-8 file or terminal takes:
  bytes that are not UTF-8 (surrogate escapes in Python) become \\xNN."""
  return os.fsencode(name).decode('utf-8', 'backslashreplace')


def refuse_existing(files, overwrite: bool):
  """Without --overwrite, a InputError for the first of `files` that exists."""
  if overwrite:
    return
  for f in files:
    if Path(f).exists():
      raise InputError(f'{f} already exists; pass --overwrite to replace it, '
                      'or choose another --out')


def check_out_folder(out: Path):
  """--out is a folder or can be made one, and can be written to: checked
  before any work, so a run does not fail at its end."""
  try:
    _check_out_folder(out)
  except OSError as e:  # e.g. a name too long for the file system
    raise InputError(f'--out {text(out)}: {e.strerror or e}') from e


def _check_out_folder(out: Path):
  raw = out / RAW_DIR
  absolute = out.absolute()
  # mkdir cannot make a folder where a symlink points nowhere.
  for path in (absolute / RAW_DIR, absolute, *absolute.parents):
    if path.is_symlink() and not path.exists():
      raise InputError(f'--out {text(out)}: {text(path)} is a dangling '
                       f'symlink (to {text(os.readlink(path))}); point it '
                       'at a folder or choose another --out')
  for folder in (out, raw):
    if folder.exists() and not folder.is_dir():
      raise InputError(f'--out {out}: {folder} exists and is not a folder')
  existing = next(p for p in (absolute, *absolute.parents) if p.exists())
  if not existing.is_dir():
    raise InputError(f'--out {out}: {existing} is not a folder')
  for folder in (existing, raw) if raw.is_dir() else (existing,):
    if not os.access(folder, os.W_OK | os.X_OK):
      raise InputError(f'--out {out}: {folder} is not writable')


def _is_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  return True


class OutLock:
  """OUT/.lock, holding the pid and host of the run writing OUT: a second
  run on the same OUT is refused instead of replacing the first one's
  images. A lock whose process is gone (on this host) is taken over with a
  note. Of several processes sharing OUT, process i > 0 holds
  OUT/.lock.<i> (process 0 and a one-process run hold OUT/.lock)."""

  def __init__(self, out: Path, index=None):
    self.out = Path(out)
    self.path = self.out / (LOCK_FILE if not index else f'{LOCK_FILE}.{index}')
    self.held = False
    self._made = []  # folders acquire() made: OUT and missing parents

  def acquire(self):
    """Takes the lock (making OUT), or raises a InputError naming the run
    that holds it."""
    absolute = self.out.absolute()
    self._made = [p for p in (absolute, *absolute.parents) if not p.exists()]
    me = {'pid': os.getpid(), 'host': socket.gethostname()}
    try:
      try:
        self.out.mkdir(parents=True, exist_ok=True)
      except OSError as e:  # a file system where none can be made (/sys)
        raise InputError(f'--out {text(self.out)}: cannot make the folder: '
                         f'{e.strerror or e}') from e
      for _ in range(3):
        try:  # O_EXCL: only one run creates it (`atomic` would replace it)
          fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
          self._take_over_stale(me['host'])
          continue
        except FileNotFoundError:  # another process's failed run removed OUT
          self.out.mkdir(parents=True, exist_ok=True)
          continue
        except OSError as e:
          raise InputError(f'--out {text(self.out)}: cannot write '
                           f'{text(self.path)}: {e.strerror or e}') from e
        with os.fdopen(fd, 'w') as f:
          json.dump(me, f)
        self.held = True
        return self
      raise InputError(f'--out {text(self.out)}: cannot take {text(self.path)}'
                      ' (other runs keep taking it); choose another --out')
    except BaseException:
      self.release()
      raise

  def _take_over_stale(self, host):
    """Removes the lock if its process is gone; else a InputError."""
    try:
      raw = self.path.read_text(encoding='utf-8')
      holder = json.loads(raw)
      pid, their_host = int(holder['pid']), str(holder['host'])
    except FileNotFoundError:
      return  # released meanwhile
    except (OSError, ValueError, TypeError, KeyError):
      holder = None  # being written by a run that has just taken it
    if holder is None or their_host != host or _is_alive(pid):
      who = ('another run' if holder is None else
             f'another run (pid {pid} on {their_host})')
      raise InputError(
          f'--out {text(self.out)} is in use by {who}; wait for it to end or '
          f'choose another --out (if no such run is left, delete '
          f'{text(self.path)})')
    # Renamed aside first: of two runs taking over the same stale lock,
    # only one gets it, and a fresh lock taken meanwhile is put back.
    aside = self.path.with_name(f'{self.path.name}.stale.{os.getpid()}')
    try:
      os.rename(self.path, aside)
    except FileNotFoundError:
      return
    if aside.read_text(encoding='utf-8') != raw:
      try:
        os.link(aside, self.path)
      except FileExistsError:
        pass
      aside.unlink()
      return
    aside.unlink()
    note(f'note: took over {text(self.path)} from pid {pid}, which is no '
         'longer running (an earlier run that was killed)')

  def release(self):
    """Removes the lock if held, and the folders acquire() made if
    nothing else was written there."""
    if self.held:
      self.held = False
      try:
        self.path.unlink(missing_ok=True)
      except OSError as e:
        # Not raised: it would hide the error that ended the run (OUT made
        # read-only, ...), which the user must see.
        note(f'warning: cannot remove {text(self.path)}: '
             f'{e.strerror or e} (a later run on this host takes it over, '
             'its process being gone; elsewhere, delete it)')
    for folder in self._made:
      try:
        folder.rmdir()
      except OSError:
        break  # outputs were written: OUT stays
    self._made = []


def output_paths(out: Path, names, evaluate: bool, run_files=True) -> list:
  """The images' outputs and, with `run_files`, those of the whole run."""
  paths = [out / f'{n}.png' for n in names]
  paths += [out / RAW_DIR / f'{n}.png' for n in names]
  if run_files:
    paths.append(out / GRID_FILE)
    if evaluate:
      paths += [out / METRICS_FILE, out / SUMMARY_FILE]
  return paths


def _file_id(path):
  """The file behind `path`, symlinks resolved: equal for two names of it."""
  st = os.stat(path)
  return st.st_dev, st.st_ino


def input_files(image_spec: str, mask_spec: str, reference=None,
                out=None) -> dict:
  """{file id: 'image PATH'} of the files a run reads: the images (the
  whole --input folder but the output folder `out`), mask files and the
  reference."""
  files = []
  if not image_spec.startswith('tfds:'):
    path = Path(image_spec)
    files += [('image', p) for p in (data.list_image_files(path, skip=out)
                                     if path.is_dir() else [path])]
  if mask_spec not in masks.MASK_KINDS:
    path = Path(mask_spec)
    files += [('mask', p) for p in (data.list_image_files(path, skip=out)
                                    if path.is_dir() else [path])]
  if reference is not None:
    files.append(('reference', reference))
  return {_file_id(p): f'{what} {p}' for what, p in files}


def finished(out: Path, names, grid_rows: int) -> np.ndarray:
  """--resume: which images an earlier run wrote completely, bool (N,).

  An image is finished when both its PNGs exist and decode. The first
  `grid_rows` images also need grid.png (whole), which is written once all
  of them are done: their G(z) is in no file, so without the grid they are
  all done again (with a note).
  """
  done = np.array([(out / f'{n}.png').is_file()
                   and (out / RAW_DIR / f'{n}.png').is_file() for n in names])
  # A PNG cut short (the disk filled, the machine stopped) is done again.
  damaged = [i for i in np.flatnonzero(done)
             if not (_decodes(out / f'{names[i]}.png')
                     and _decodes(out / RAW_DIR / f'{names[i]}.png'))]
  if damaged:
    done[damaged] = False
    shown = names_list([text(names[i]) for i in damaged])
    note(f'note: --resume: the outputs of {shown} are truncated or '
         'unreadable; completing them again')
  rows = min(len(names), grid_rows)
  grid = out / GRID_FILE
  whole = grid.is_file() and _decodes(grid)
  if not (done[:rows].all() and whole):
    redone = np.flatnonzero(done[:rows])
    if len(redone):
      why = ('is missing' if not grid.exists() else
             'is truncated or unreadable' if not whole else
             'is made again for its rows not finished')
      note(f'note: --resume: {GRID_FILE} {why}; it shows the G(z) of the '
           f'first {rows} images (--grid-max), which no other file keeps: '
           f'completing {names_list([text(names[i]) for i in redone])} '
           'again')
    done[:rows] = False
  return done


def image_files(names, rows) -> list:
  """The files written for the images `rows`, relative to OUT."""
  return [f'{RAW_DIR}/{text(names[i])}.png' for i in rows] + [
      f'{text(names[i])}.png' for i in rows]


def _decodes(path) -> bool:
  """Whether an image file decodes whole."""
  try:
    with Image.open(path) as img:
      img.load()
    return True
  except (OSError, SyntaxError, ValueError):
    return False


def check_outputs(out: Path, names, inputs: dict, *, evaluate: bool,
                  overwrite: bool, resume: bool, grid_rows: int,
                  rows=None, run_files=True) -> np.ndarray:
  """Refuses outputs that are input files (`inputs`, of `input_files`), and
  (without `overwrite` or `resume`) existing ones; returns which images
  --resume skips.

  One of several processes checks only what it writes: its images `rows`
  (indices; None: all) and, with `run_files`, grid.png, metrics.csv and
  summary.json. (The other processes may be writing theirs already.)
  """
  if Path(GRID_FILE).stem in names:
    raise InputError(f'an input image is named {Path(GRID_FILE).stem!r}: its '
                    f'output would collide with {out / GRID_FILE}; rename it')
  own = names if rows is None else [names[i] for i in rows]
  targets = output_paths(out, own, evaluate, run_files)
  # Whatever the flags: --overwrite would destroy the input, and --resume
  # would take it for a finished output.
  for t in targets:
    if t.exists() and _file_id(t) in inputs:
      raise InputError(f'{t} is an input ({inputs[_file_id(t)]}): writing '
                      'there would destroy it; choose another --out')
  if resume:
    if read_run_record(out) is None and any(t.exists() for t in targets):
      raise InputError(
          f'--resume: {text(out)}/ holds outputs of an earlier run but no '
          f'{RUN_FILE}, the record of its settings, so they cannot be '
          f'checked against this run\'s; {START_ANEW}')
    return finished(out, names, grid_rows)
  refuse_existing(targets, overwrite)
  return np.zeros(len(names), bool)


def remove_stale_metrics(out: Path) -> list:
  """Removes metrics.csv and summary.json of an earlier --evaluate run in
  OUT, which a run without ground truth that writes images would leave
  describing other images; returns the names removed."""
  removed = []
  for name in (METRICS_FILE, SUMMARY_FILE):
    if (out / name).is_file():
      (out / name).unlink()
      removed.append(name)
  return removed


def read_run_record(out: Path) -> dict | None:
  """OUT/run.json, the settings ({flag: value}) of the run that wrote OUT;
  None if there is none. An InputError if it cannot be read or records no
  settings: --resume cannot check what it would keep."""
  path = out / RUN_FILE
  if not path.exists():
    return None
  try:
    saved = json.loads(path.read_text(encoding='utf-8'))
  except (OSError, ValueError) as e:
    raise InputError(f'--resume: cannot read {text(path)}, the settings of '
                     f'the run in {text(out)}/ ({e}); {START_ANEW}') from e
  if not isinstance(saved, dict) or not saved:
    raise InputError(f'--resume: {text(path)} records no settings (expected '
                     f'a JSON object of flags and values); {START_ANEW}')
  return saved


def check_run_settings(out: Path, settings: dict, resume: bool):
  """--resume: refuses settings ({flag: value}) that differ from those
  recorded in OUT/run.json by the run being resumed, or that it does not
  record, naming the first one: its finished images would be kept beside
  images of other settings. (Outputs without a record: `check_outputs`.)"""
  saved = read_run_record(out) if resume else None
  if saved is None:
    return
  for flag, value in settings.items():
    if flag not in saved:
      raise InputError(
          f'--resume: {text(out / RUN_FILE)} does not record {flag}, so the '
          f'run in {text(out)}/ cannot be checked against this one; '
          f'{START_ANEW}')
    if saved[flag] != value:
      raise InputError(
          f'--resume: {flag} is {value!r} but the run in {text(out)}/ used '
          f'{saved[flag]!r} ({RUN_FILE}); resume with its settings, or start '
          'anew with --overwrite or another --out')


def read_finished(out: Path, names, rows, resolution: int) -> np.ndarray:
  """--resume --evaluate: the PNGs of the finished images `rows` (indices),
  uint8 (K, R, R, 3)."""
  arrays = []
  for i in rows:
    path = out / f'{names[i]}.png'
    (w, h), _ = inspect_image(path)
    if (w, h) != (resolution, resolution):
      raise InputError(f'--resume: {path} is {w}x{h}, not {resolution}x'
                      f'{resolution}: not an output of this model')
    with Image.open(path) as img:
      arrays.append(np.asarray(img.convert('RGB')))
  return np.stack(arrays)
