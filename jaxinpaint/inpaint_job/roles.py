"""What this process does in an `inpaint.py` run: its role, which `runner`
asks instead of testing whether it is one of several processes.

The only process of a run (`OnlyProcess`) completes every image and writes
every file as it goes: the PNGs and metrics.csv rows of each batch, grid.png
once its rows are done. One of several processes (`OneOfSeveral`) completes
and writes its own block of images only (and reads only those), logging
each batch in its status file and leaving the G(z) of its rows of the grid;
process 0, the chief, then waits for the others and writes grid.png,
metrics.csv and summary.json of all of them from what they left and their
PNGs read back: a one-process run's files, byte for byte. (`processes`
holds the status logs.)
"""
import dataclasses

import numpy as np

from jaxinpaint import errors
from jaxinpaint.inpaint_job import identity_columns, outputs, processes
from jaxinpaint.inpaint_job.writer import BatchWriter

# Images read at a time when metrics are computed from written PNGs.
METRICS_CHUNK = 256


def for_plan(plan):
  """The role of this process in `plan` (a `runner.Plan`)."""
  return OnlyProcess(plan) if plan.share is None else OneOfSeveral(plan)


class OnlyProcess:
  """A run of one process: it writes every file as it goes, and has nothing
  to log or wait for. `OneOfSeveral` has the same attributes and methods."""
  is_chief = True  # writes run.json and the run's grid.png, metrics, summary
  who = ''  # what starts its notes
  batch_progress = True  # the completion shows its own progress bar

  def __init__(self, plan):
    self.plan = plan

  def block(self, n: int) -> np.ndarray:
    """The images it completes, of n: all of them."""
    return np.arange(n)

  def open_writer(self) -> BatchWriter:
    """The writer of its images, with the metrics of those finished before
    (--resume --evaluate) read back from their PNGs."""
    plan = self.plan
    writer = BatchWriter(plan.out, plan.names, _grid_inputs(plan),
                         plan.done, plan.grid_rows,
                         identity=identity_columns.for_plan(plan))
    if plan.settings.evaluate and plan.done.any():
      _add_written_metrics(writer, plan, np.flatnonzero(plan.done))
    return writer

  def start(self, todo: int, resumed: int):
    """Before its first batch: `todo` images to complete, `resumed` done."""

  def write_batch(self, writer: BatchWriter, rows, results, completed: int):
    """Writes the completed images `rows` (of `results`); `completed`: its
    images completed so far."""
    per_image = None
    if self.plan.settings.evaluate:
      # pylint: disable-next=g-import-not-at-top
      from jaxinpaint.completion import batched
      per_image, _ = batched.evaluate(results['images'], results,
                                      results['masks'])
      if writer.identity is not None:
        per_image.update(writer.identity.per_image(
            rows, results['blended'], results['images']))
    writer.batch(rows, results, per_image)

  def finish(self, writer: BatchWriter, resumed: int, final_losses):
    """After its last batch: returns (the writer of the run's files, the
    images finished before this run, the final losses of those it
    completed), of the whole run for the chief."""
    return writer, resumed, final_losses

  def close(self):
    """Ends what it shows (a progress bar), however the run ended."""


class OneOfSeveral:
  """One of several processes (`plan.share`): it completes and writes its
  own block of images (no grid, no metrics), logs each batch in its status
  file, keeps its rows of the grid for process 0, and (process 0) writes
  the files of the whole run at the end (`finish`)."""
  batch_progress = False  # process 0's bar counts the images of all

  def __init__(self, plan):
    self.plan, self.share = plan, plan.share
    self.is_chief = self.share.index == 0
    self.who = f'process {self.share.index}: '
    self.status = processes.Status(plan.out, self.share)
    self.progress = None  # made by `start`
    self.grid_kept = {}  # {row of the grid: (G(z), blended)} of its block

  def block(self, n: int) -> np.ndarray:
    return self.share.rows(n)

  def open_writer(self) -> BatchWriter:
    plan = self.plan
    return BatchWriter(plan.out, plan.names, (None, None, None), plan.done, 0)

  def start(self, todo: int, resumed: int):
    self.progress = processes.Progress(len(self.plan.names), self.share,
                                       self.plan.out)
    self.status.write(processes.RUNNING, completed=0, todo=todo,
                      resumed=resumed)

  def write_batch(self, writer: BatchWriter, rows, results, completed: int):
    writer.batch(rows, results)
    for j in np.flatnonzero(rows < self.plan.settings.grid_max):
      self.grid_kept[int(rows[j])] = (results['generated'][j],
                                      results['blended'][j])
    self.status.write(processes.RUNNING, completed=completed,
                      written=outputs.image_files(self.plan.names, rows))
    self.progress.update()

  def finish(self, writer: BatchWriter, resumed: int, final_losses):
    if self.grid_kept:
      rows = sorted(self.grid_kept)
      processes.save_arrays(
          processes.grid_rows_path(self.plan.out, self.share.index),
          rows=np.array(rows),
          generated=np.stack([self.grid_kept[i][0] for i in rows]),
          blended=np.stack([self.grid_kept[i][1] for i in rows]))
    self.status.write(processes.DONE, final_losses=final_losses.tolist())
    if not self.is_chief:
      return writer, resumed, final_losses
    writer.close()
    return self._gather()

  def close(self):
    if self.progress is not None:
      self.progress.close()

  def _gather(self):
    """Process 0, after its own block: waits for every process, then writes
    grid.png (from the G(z) each process left) and, with --evaluate,
    metrics.csv and summary.json from the PNGs of all processes, read back
    as --resume does. Returns `finish`'s triple for the whole run."""
    plan, n = self.plan, len(self.plan.names)
    statuses = processes.wait_for_all(plan.out, self.share,
                                      plan.settings.process_timeout,
                                      on_update=self.progress.update)
    # The grid's images were all done before (and grid.png kept) or are all
    # completed in this run (outputs.finished): each process left its rows.
    grid_done = plan.done[:plan.grid_rows].all()
    writer = BatchWriter(plan.out, plan.names, _grid_inputs(plan),
                         np.full(n, grid_done), plan.grid_rows,
                         identity=identity_columns.for_plan(plan))
    if not grid_done:
      self._add_grid_rows(writer)
    if plan.settings.evaluate:
      _add_written_metrics(writer, plan, np.arange(n))
    resumed = sum(s['resumed'] for s in statuses)
    final_losses = np.concatenate([np.asarray(s['final_losses'], np.float32)
                                   for s in statuses])
    return writer, resumed, final_losses

  def _add_grid_rows(self, writer: BatchWriter):
    """Hands the writer the grid rows every process left (grid.png is
    written with the last); a RunError if some are missing."""
    plan, n = self.plan, len(self.plan.names)
    for i in range(self.share.count):
      block = dataclasses.replace(self.share, index=i).rows(n)
      if len(block) and block[0] < plan.grid_rows:  # it had rows of the grid
        path = processes.grid_rows_path(plan.out, i)
        try:
          with np.load(path) as rows:
            writer.add_grid_rows(rows['rows'], rows['generated'],
                                 rows['blended'])
        except (OSError, ValueError, KeyError) as e:
          raise errors.RunError(f'cannot read {outputs.text(path)}, the '
                                f'grid rows of process {i}: {e}') from e
    if writer.grid is not None:
      raise errors.RunError(
          f'the processes left {len(writer.grid)} of the {plan.grid_rows} '
          f'rows of {outputs.text(plan.out / outputs.GRID_FILE)}; rerun '
          'without --resume')


Role = OnlyProcess | OneOfSeveral


def _damaged(images):
  """Holes grey (0 in [-1, 1]): the grid's input column."""
  return np.where(images['masks'] > 0.5, images['images'], np.float32(0))


def _grid_inputs(plan):
  """(masked, reference, original or None) of the grid's rows: the first
  `plan.grid_rows` images, read once here (a bounded number)."""
  rows = np.arange(plan.grid_rows)
  images = plan.images.read(rows) if len(rows) else None
  masked = (None if images is None else
            _damaged({'images': images, 'masks': plan.read_masks(rows)}))
  truth = images if plan.settings.evaluate else None
  return masked, plan.reference, truth


def _add_written_metrics(writer: BatchWriter, plan, rows):
  """--evaluate: the metrics of images already written in OUT (of an
  earlier run, or of other processes), from their PNGs, against the
  originals; `METRICS_CHUNK` images at a time."""
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint.completion import batched
  for start in range(0, len(rows), METRICS_CHUNK):
    chunk = rows[start:start + METRICS_CHUNK]
    written = outputs.read_finished(plan.out, plan.names, chunk,
                                    plan.resolution)
    originals = plan.images.read(chunk)
    completed = written.astype(np.float32) / 127.5 - 1
    per_image, _ = batched.evaluate(originals, completed,
                                    plan.read_masks(chunk))
    if writer.identity is not None:
      per_image.update(writer.identity.per_image(chunk, completed, originals))
    writer.add_metrics(chunk, per_image)
