"""Outputs of a completion run: checked before any work, written atomically
or batch by batch, so that nothing written is lost or overwritten silently.

The layout under OUT: `<name>.png` (blended), `raw/<name>.png` (the overlay
before blending), `grid.png`, and with ground truth `metrics.csv` and
`summary.json`. No JAX here: the checks run before any computation.
"""
import csv
import json
import os
import socket
from pathlib import Path

import numpy as np
from PIL import Image

from jaxinpaint import atomic, data
from jaxinpaint.data import masks
from jaxinpaint.errors import InputError, RunError
from jaxinpaint.inpaint_job.inputs import inspect_image, names_list, note

GRID_FILE, RAW_DIR = 'grid.png', 'raw'
METRICS_FILE, SUMMARY_FILE = 'metrics.csv', 'summary.json'
RUN_FILE = 'run.json'  # the settings the images were completed with
LOCK_FILE = '.lock'  # held by the run writing OUT (see OutLock)
METRIC_KEYS = ('mse', 'psnr', 'ssim', 'hole_mse')


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
  raw = out / RAW_DIR
  for folder in (out, raw):
    if folder.exists() and not folder.is_dir():
      raise InputError(f'--out {out}: {folder} exists and is not a folder')
  absolute = out.absolute()
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
    self.out.mkdir(parents=True, exist_ok=True)
    me = {'pid': os.getpid(), 'host': socket.gethostname()}
    try:
      for _ in range(3):
        try:
          fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
          self._take_over_stale(me['host'])
          continue
        except FileNotFoundError:  # another process's failed run removed OUT
          self.out.mkdir(parents=True, exist_ok=True)
          continue
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
      self.path.unlink(missing_ok=True)
      self.held = False
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

  An image is finished when both its PNGs exist. The first `grid_rows`
  images also need grid.png, which is written once all of them are done:
  their G(z) is in no file, so without the grid they are all done again.
  """
  done = np.array([(out / f'{n}.png').is_file()
                   and (out / RAW_DIR / f'{n}.png').is_file() for n in names])
  # A PNG cut short (the disk filled, the machine stopped) is done again.
  damaged = [i for i in np.flatnonzero(done)
             if not (_decodes(out / f'{names[i]}.png')
                     and _decodes(out / RAW_DIR / f'{names[i]}.png'))]
  if damaged:
    done[damaged] = False
    note(f'note: --resume: the outputs of {names_list([text(names[i]) for i in damaged])} '
         'are truncated or unreadable; completing them again')
  rows = min(len(names), grid_rows)
  if not (done[:rows].all() and (out / GRID_FILE).is_file()):
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


def check_run_settings(out: Path, settings: dict, resume: bool):
  """--resume: refuses settings ({flag: value}) that differ from those
  recorded in OUT/run.json by the run being resumed, naming the first one:
  its finished images would be kept beside images of other settings."""
  path = out / RUN_FILE
  if not resume or not path.is_file():
    return
  try:
    saved = json.loads(path.read_text(encoding='utf-8'))
  except (OSError, ValueError) as e:
    raise InputError(f'--resume: cannot read {text(path)}, the settings of '
                    f'the run in {text(out)}/ ({e}); rerun without --resume '
                    '(--overwrite) or choose another --out') from e
  if not isinstance(saved, dict):
    saved = {}
  for flag, value in settings.items():
    if flag in saved and saved[flag] != value:
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


class BatchWriter:
  """Writes each batch as soon as it is completed, so an interrupted or
  failed run keeps the finished ones: its PNGs, grid.png once the grid's
  rows are all done, and its rows of metrics.csv (with ground truth).

  Args:
    out: the output folder.
    names: (N,) output names.
    grid_columns: (images, reference or None, ground truth or None): the
      grid's first columns (images with holes shown) and, with ground
      truth, its last one.
    done: (N,) bool, images finished by an earlier run.
    grid_rows: images shown in grid.png (the first ones).
    finished_metrics: {metric: (K,)} of the done images, or None.
  """

  def __init__(self, out: Path, names, grid_columns, done, grid_rows: int,
               finished_metrics=None):
    self.out, self.names, n = out, names, len(names)
    self.masked, self.reference, self.truth = grid_columns
    self.complete = int(done.sum())  # images with both PNGs
    self.per_image = {k: np.zeros(n) for k in METRIC_KEYS}
    self._csv = None  # metrics.csv, opened at the first rows to write
    self._csv_rows = []
    if finished_metrics is not None:
      for j, i in enumerate(np.flatnonzero(done)):
        self._add_metrics(i, {k: v[j] for k, v in finished_metrics.items()})
    # The grid's rows, when it has to be made: G(z) and blended of each.
    rows = min(n, grid_rows)
    self.grid = None if done[:rows].all() else {}
    self.grid_rows = rows

  def _fail(self, path, error: OSError):
    raise RunError(
        f'cannot write {text(path)}: {error.strerror or error}; '
        f'{self.complete} of {len(self.names)} images are complete in '
        f'{text(self.out)}/ (rerun with --resume to do the rest)') from error

  def _add_metrics(self, i, values):
    for k in METRIC_KEYS:
      self.per_image[k][i] = values[k]
    self._csv_rows.append([text(self.names[i])]
                          + [f'{values[k]:.6f}' for k in METRIC_KEYS])

  def _flush_metrics(self):
    """Appends the pending rows to metrics.csv (made at the first call)."""
    path = self.out / METRICS_FILE
    try:
      if self._csv is None:
        self._csv = open(path, 'w', newline='', encoding='utf-8')
        self._csv_rows.insert(0, ('name',) + METRIC_KEYS)
      csv.writer(self._csv).writerows(self._csv_rows)
      self._csv.flush()
    except OSError as e:
      self._fail(path, e)
    self._csv_rows.clear()

  def batch(self, rows, results, per_image=None):
    """Writes the completed images `rows` (indices into the inputs)."""
    finite = np.isfinite(results['blended']).all(axis=(1, 2, 3))
    if not finite.all():
      bad = [self.names[rows[j]] for j in np.flatnonzero(~finite)]
      raise RunError(f'completion produced non-finite values for '
                     f'{names_list(bad)}; is the checkpoint healthy?')
    from jaxinpaint.data import grids  # pylint: disable=g-import-not-at-top
    from jaxinpaint.ops import metrics
    blended = metrics.to_uint8(results['blended'])
    overlay = metrics.to_uint8(results['overlay'])
    for j, i in enumerate(rows):
      name = self.names[i]
      # The blended PNG last: with both, --resume counts the image as done.
      for path, image in ((self.out / RAW_DIR / f'{name}.png', overlay[j]),
                          (self.out / f'{name}.png', blended[j])):
        try:
          grids.save_png(path, image)
        except OSError as e:
          self._fail(path, e)
      self.complete += 1
    self.add_grid_rows(rows, results['generated'], results['blended'])
    if per_image is not None:
      self.add_metrics(rows, per_image)

  def add_grid_rows(self, rows, generated, blended):
    """Keeps the grid's rows among `rows` (G(z) and blended, float); writes
    grid.png once it has all of them."""
    if self.grid is None:
      return
    for j, i in enumerate(rows):
      if i < self.grid_rows:
        self.grid[i] = (generated[j], blended[j])
    if len(self.grid) == self.grid_rows:
      self._write_grid()

  def add_metrics(self, rows, per_image):
    """Appends the metrics.csv rows of the images `rows` ({metric: (K,)})."""
    for j, i in enumerate(rows):
      self._add_metrics(i, {k: per_image[k][j] for k in METRIC_KEYS})
    self._flush_metrics()

  def _write_grid(self):
    from jaxinpaint.data import grids  # pylint: disable=g-import-not-at-top
    rows = self.grid_rows
    masked = self.masked[:rows]
    columns, labels = [masked], ['input']
    if self.reference is not None:
      columns.append(np.broadcast_to(self.reference, masked.shape))
      labels.append('reference')
    columns += [np.stack([self.grid[i][0] for i in range(rows)]),
                np.stack([self.grid[i][1] for i in range(rows)])]
    labels += ['G(z)', 'blended']
    if self.truth is not None:
      columns.append(self.truth[:rows])
      labels.append('original')
    try:
      grids.save_rows(self.out / GRID_FILE, columns, labels)
    except OSError as e:
      self._fail(self.out / GRID_FILE, e)
    self.grid = None

  def finish(self, summary=None):
    """With ground truth (`summary` given): the last metrics.csv rows (all
    of them if nothing was completed in this run) and summary.json."""
    if summary is not None:
      self._flush_metrics()
      try:
        atomic.write_json(self.out / SUMMARY_FILE, summary)
      except OSError as e:
        self._fail(self.out / SUMMARY_FILE, e)

  def close(self):
    if self._csv is not None:
      self._csv.close()
