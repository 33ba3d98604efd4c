"""Writes a completion run's outputs as the batches are completed (see
`outputs` for the layout under OUT and the checks made before any work):
each batch's PNGs and metrics.csv rows at once, grid.png once its rows are
all done, summary.json at the end, so that an interrupted or failed run
keeps every finished image. No JAX here."""
import csv
from pathlib import Path

import numpy as np

from jaxinpaint import atomic
from jaxinpaint.errors import RunError
from jaxinpaint.inpaint_job.inputs import names_list
from jaxinpaint.inpaint_job.outputs import (GRID_FILE, METRIC_KEYS,
                                            METRICS_FILE, RAW_DIR,
                                            SUMMARY_FILE, text)


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
    identity: `identity_columns.Columns` (its columns follow the
      metrics'), or None.
  """

  def __init__(self, out: Path, names, grid_columns, done, grid_rows: int,
               finished_metrics=None, identity=None):
    self.out, self.names, n = out, names, len(names)
    self.identity = identity
    self.metric_keys = METRIC_KEYS + (identity.keys if identity else ())
    self.masked, self.reference, self.truth = grid_columns
    self.complete = int(done.sum())  # images with both PNGs
    self.per_image = {k: np.zeros(n) for k in self.metric_keys}
    self._csv = None  # metrics.csv, opened at the first rows to write
    self._csv_rows = []
    if finished_metrics is not None:
      for j, i in enumerate(np.flatnonzero(done)):
        self._add_metrics(i, {k: v[j] for k, v in finished_metrics.items()})
    # The grid's rows, when it has to be made: G(z) and blended of each.
    rows = min(n, grid_rows)
    self.grid = None if done[:rows].all() else {}
    self.grid_rows = rows
    self.grid_complete = 0  # complete images of the grid's rows (unwritten)

  def resume_hint(self) -> str:
    """What to do after a run that stopped: --resume, and which complete
    images it does again (the grid's, while grid.png is not written)."""
    hint = 'rerun with --resume to do the rest'
    if self.grid is not None and self.grid_complete:
      hint += (f'; it completes those {self.grid_complete} again: '
               f'{GRID_FILE}, not written yet, needs their G(z), which no '
               'file keeps')
    return hint

  def _fail(self, path, error: OSError):
    raise RunError(
        f'cannot write {text(path)}: {error.strerror or error}; '
        f'{self.complete} of {len(self.names)} images are complete in '
        f'{text(self.out)}/ ({self.resume_hint()})') from error

  def _add_metrics(self, i, values):
    for k in self.metric_keys:
      self.per_image[k][i] = values[k]
    # NaN (an identity without other photos): an empty cell.
    self._csv_rows.append([text(self.names[i])]
                          + ['' if np.isnan(values[k]) else f'{values[k]:.6f}'
                             for k in self.metric_keys])

  def _flush_metrics(self):
    """Appends the pending rows to metrics.csv (made at the first call)."""
    path = self.out / METRICS_FILE
    try:
      if self._csv is None:
        # Not `atomic`: appended batch by batch, so that an interrupted run
        # keeps the rows of its finished images, as it keeps their PNGs.
        self._csv = open(path, 'w', newline='', encoding='utf-8')
        self._csv_rows.insert(0, ('name',) + self.metric_keys)
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
      self.grid_complete += int(i < self.grid_rows)
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
      self._add_metrics(i, {k: per_image[k][j] for k in self.metric_keys})
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
