"""Executes a checked `inpaint.py` run (`inpaint_cli` parses and plans).

The images stream: `batched.inpaint_batches` reads each batch when it
is due (the next one on a thread), completes it and hands it to
`outputs.BatchWriter`, which writes its PNGs and metrics rows at once; only
per-image numbers (N floats) and the grid's first rows are kept, so memory
is bounded by the batch size whatever the number of images. One of several
processes completes and writes its own block of images only (and reads
only those), logging each batch in its status file; process 0 then waits
for the others and writes grid.png, metrics.csv and summary.json of all of
them (`_finish_processes`).
"""
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from jaxinpaint import atomic, errors
from jaxinpaint.inpaint_job import inputs, outputs, processes
from jaxinpaint.models import loading

PAPER_STEPS = 1000
CPU_DEFAULT_STEPS = 200
# Images read at a time when metrics are computed from written PNGs.
METRICS_CHUNK = 256


@dataclasses.dataclass(frozen=True)
class Settings:
  """How the images are completed and what is written (inpaint.py's
  flags); `steps=None`: the paper's 1000 on an accelerator, fewer on a CPU."""
  steps: int | None = None
  restarts: int = 1
  tune_steps: int = 0
  loss: str | None = None  # None: 'paper' (conditional: its own loss)
  seed: int = 0
  batch_size: int = 64
  blend: bool = True
  dtype: str | None = None
  evaluate: bool = False
  resume: bool = False  # finish an earlier run: its settings must match
  grid_max: int = 64
  devices: int | None = None
  process_timeout: float = 3600


@dataclasses.dataclass
class Plan:
  """Everything a run needs, checked: nothing computed or written yet."""
  model_dir: Path
  images: Any  # rows reader of N images (`inputs.ImageFiles`, ...)
  names: list
  resolution: int
  mask: Any  # (1, R, R, 1) array, or a rows reader of N masks
  reference: np.ndarray | None  # (1, R, R, 3) or None
  out: Path
  done: np.ndarray  # (N,) bool: finished by an earlier run (--resume)
  settings: Settings
  record: dict  # what OUT/run.json records (`--resume` compares it)
  share: processes.Share | None = None  # one of several processes
  lock: outputs.OutLock | None = None  # held on `out` until `execute` ends

  @property
  def grid_rows(self) -> int:
    return min(len(self.names), self.settings.grid_max)

  def read_masks(self, rows) -> np.ndarray:
    """The masks of the images `rows` (one shared mask broadcast)."""
    # pylint: disable-next=g-import-not-at-top
    from jaxinpaint.completion import batched
    return batched.rows_reader('masks', self.mask,
                                        len(self.names))(rows)


@dataclasses.dataclass
class Outcome:
  summary: dict  # metrics (with --evaluate) and the run's settings
  completed: int  # images completed by this run (all processes)
  resumed: int  # images finished before it


def execute(plan: Plan) -> Outcome:
  """Completes the planned images and writes every output, then releases
  the lock on OUT. Raises errors.InputError when the model cannot be
  loaded, errors.RunError when the completion is not finite or a write
  fails, errors.Interrupted (saying what was kept) on Ctrl-C."""
  try:
    return _execute(plan)
  finally:
    if plan.lock is not None:
      plan.lock.release()


def _execute(plan: Plan) -> Outcome:
  # Here, not at the top: inpaint.py's --help and checks need no JAX.
  # pylint: disable=g-import-not-at-top
  from jaxinpaint import completion, sharding
  from jaxinpaint.completion import batched
  from jaxinpaint.ops import metrics
  # pylint: enable=g-import-not-at-top
  s, out, share, n = plan.settings, plan.out, plan.share, len(plan.names)
  with errors.naming_flags(devices='--devices'):
    devices = sharding.completion_devices(s.devices)
  model = load_model(plan.model_dir)
  conditional = plan.reference is not None
  loss_name = None if conditional else (s.loss or 'paper')
  spec = (completion.ConditionalSpec() if conditional
          else completion.get_loss(loss_name))
  steps = s.steps or (CPU_DEFAULT_STEPS if devices[0].platform == 'cpu'
                      else PAPER_STEPS)
  dtype = s.dtype or str(model.config.model.dtype)
  record = dict(plan.record, **{'model step': int(model.step),
                                '--steps': steps, '--dtype': dtype})
  outputs.check_run_settings(out, record, s.resume)
  if share is None or share.index == 0:
    try:
      atomic.write_json(out / outputs.RUN_FILE, record)
    except OSError as e:
      raise errors.RunError(f'cannot write {outputs.text(out)}/'
                            f'{outputs.RUN_FILE}: {e.strerror or e}') from e

  block = np.arange(n) if share is None else share.rows(n)
  todo = block[~plan.done[block]]
  # Several processes: this one writes its images only (no grid, no
  # metrics); it leaves its grid rows' G(z) for process 0.
  writer = outputs.BatchWriter(
      out, plan.names, _grid_inputs(plan) if share is None else
      (None, None, None), plan.done, plan.grid_rows if share is None else 0)
  if s.evaluate and share is None and plan.done.any():
    _add_written_metrics(writer, plan, np.flatnonzero(plan.done))
  status = None if share is None else processes.Status(out, share)
  progress = None if share is None else processes.Progress(n, share, out)
  grid_kept = {}  # several processes: this one's rows of the grid
  final_losses = np.zeros(0, np.float32)
  try:
    if status is not None:
      status.write(processes.RUNNING, completed=0, todo=len(todo),
                   resumed=len(block) - len(todo))
    if len(todo) and not s.evaluate and (share is None or share.index == 0):
      stale = outputs.remove_stale_metrics(out)
      if stale:
        inputs.note(f'note: removed {" and ".join(stale)} of an earlier '
                    'run with --evaluate: they would not describe the '
                    'images completed now (rerun with --evaluate for '
                    'metrics)')
    if len(todo) < len(block):
      inputs.note(f'--resume: {len(block) - len(todo)} of {len(block)} '
                  f'images are finished in {outputs.text(out)}/; skipping '
                  'them')
    if len(todo):
      batch = sharding.round_batch_size(s.batch_size, len(todo),
                                                len(devices))
      # Before compiling a search that cannot fit.
      with errors.naming_flags(restarts='--restarts',
                               batch_size='--batch-size'):
        batched.check_search_memory(model, batch, s.restarts, devices)
      _announce(share, len(todo), model.step, steps, s, devices, batch)

      def on_batch(start, stop, results):
        rows = todo[start:stop]
        per_image = None
        if s.evaluate and share is None:
          per_image, _ = batched.evaluate(results['images'], results,
                                           results['masks'])
        writer.batch(rows, results, per_image)
        if share is not None:
          for j in np.flatnonzero(rows < s.grid_max):
            grid_kept[int(rows[j])] = (results['generated'][j],
                                       results['blended'][j])
          status.write(processes.RUNNING, completed=stop,
                       written=outputs.image_files(plan.names, rows))
          progress.update()

      options = completion.Options(steps=steps, restarts=s.restarts,
                                   blend=s.blend, dtype=s.dtype,
                                   tune_steps=s.tune_steps)
      # With --evaluate the inputs are whole images: completion never reads
      # their hole pixels (the grid shows them damaged, `_damaged`).
      results = batched.inpaint_batches(
          model, _BlockReader(plan.images, todo),
          _BlockReader(plan.mask, todo) if hasattr(plan.mask, 'read')
          else plan.mask, todo, spec=spec, options=options,
          batch_size=s.batch_size, seed=s.seed, reference=plan.reference,
          on_batch=on_batch, devices=devices, progress=share is None,
          keep=('final_loss',))
      final_losses = results['final_loss'].min(axis=1)

    resumed = n - len(todo)
    if share is not None:
      if grid_kept:
        rows = sorted(grid_kept)
        processes.save_arrays(
            processes.grid_rows_path(out, share.index), rows=np.array(rows),
            generated=np.stack([grid_kept[i][0] for i in rows]),
            blended=np.stack([grid_kept[i][1] for i in rows]))
      status.write(processes.DONE, final_losses=final_losses.tolist())
      if share.index != 0:
        return Outcome({}, len(todo), len(block) - len(todo))
      writer.close()
      writer, resumed, final_losses = _finish_processes(plan, progress)
    summary = {}
    if s.evaluate:
      summary = metrics.summarize(*(writer.per_image[k]
                                    for k in outputs.METRIC_KEYS))
    summary.update(
        method='conditional' if conditional else 'inpainting',
        loss=loss_name or 'conditional',
        loss_weights=dataclasses.asdict(spec), steps=steps,
        restarts=s.restarts, tune_steps=s.tune_steps,
        batch_size=s.batch_size, seed=s.seed, mask=record['--mask'],
        blend=s.blend, input=record['--input'],
        reference=record['--reference'], checkpoint=record['--checkpoint'],
        checkpoint_step=model.step,
        model={k: model.config.model[k]
               for k in ('arch', 'resolution', 'width', 'z_dim')},
        dtype=dtype, resumed=resumed,
        # Of the images completed in this run (None: all were resumed).
        final_loss_mean=(float(final_losses.mean()) if len(final_losses)
                         else None),
        device=devices[0].device_kind)
    writer.finish(summary if s.evaluate else None)
  except KeyboardInterrupt as e:
    what = ('terminated by SIGTERM' if isinstance(e, errors.Terminated)
            else 'interrupted')
    raise errors.Interrupted(
        f'{what}: {writer.complete} of {n} images are complete in '
        f'{outputs.text(out)}/; rerun with --resume to do the rest') from e
  finally:
    writer.close()
    if progress is not None:
      progress.close()
  return Outcome(summary, n - resumed, resumed)


def load_model(model_dir):
  """The model, or one InputError line for one that does not load."""
  try:
    return loading.load_model(model_dir)
  except (errors.ChecksumError, errors.DamagedCheckpointError) as e:
    raise errors.InputError(str(e)) from e
  except Exception as e:  # pylint: disable=broad-except
    # A damaged checkpoint: orbax and tensorstore raise many types.
    first = (str(e).strip().splitlines() or [''])[0]
    raise errors.InputError(f'{model_dir}: cannot load the model: '
                            f'{type(e).__name__}: {first}') from e


def _announce(share, count, model_step, steps, s: Settings, devices, batch):
  who = '' if share is None else f'process {share.index}: '
  tuning = f', then {s.tune_steps} steps tuning G' if s.tune_steps else ''
  batches = -(-count // batch)
  inputs.note(
      f'{who}completing {count} image{"s" * (count != 1)} with the model at '
      f'step {model_step}: {steps} Adam steps x {s.restarts} restart(s)'
      f'{tuning} on {len(devices)} {devices[0].platform} '
      f'device{"s" * (len(devices) != 1)}, {batches} compiled '
      f'batch{"es" * (batches != 1)} (a CPU takes minutes; a GPU seconds)')


class _BlockReader:
  """The rows `rows` of a rows reader, renumbered 0 .. len(rows) - 1."""

  def __init__(self, source, rows):
    self.source, self.rows = source, rows

  def __len__(self):
    return len(self.rows)

  def read(self, rows):
    return self.source.read(self.rows[np.asarray(rows)])


def _damaged(images):
  """Holes grey (0 in [-1, 1]): the grid's input column."""
  return np.where(images['masks'] > 0.5, images['images'], np.float32(0))


def _grid_inputs(plan: Plan):
  """(masked, reference, original or None) of the grid's rows: the first
  `plan.grid_rows` images, read once here (a bounded number)."""
  rows = np.arange(plan.grid_rows)
  images = plan.images.read(rows) if len(rows) else None
  masked = (None if images is None else
            _damaged({'images': images, 'masks': plan.read_masks(rows)}))
  truth = images if plan.settings.evaluate else None
  return masked, plan.reference, truth


def _add_written_metrics(writer, plan: Plan, rows):
  """--evaluate: the metrics of images already written in OUT (of an
  earlier run, or of other processes), from their PNGs, against the
  originals; `METRICS_CHUNK` images at a time."""
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint.completion import batched
  for start in range(0, len(rows), METRICS_CHUNK):
    chunk = rows[start:start + METRICS_CHUNK]
    written = outputs.read_finished(plan.out, plan.names, chunk,
                                   plan.resolution)
    per_image, _ = batched.evaluate(
        plan.images.read(chunk), written.astype(np.float32) / 127.5 - 1,
        plan.read_masks(chunk))
    writer.add_metrics(chunk, per_image)


def _finish_processes(plan: Plan, progress):
  """Process 0, after its own block: waits for every process, then writes
  grid.png (from the G(z) each process left) and, with --evaluate,
  metrics.csv and summary.json from the PNGs of all processes, read back as
  --resume does. Returns (writer, resumed count, final losses)."""
  share, out, names, s = plan.share, plan.out, plan.names, plan.settings
  n = len(names)
  statuses = processes.wait_for_all(out, share, s.process_timeout,
                                    on_update=progress.update)
  # The grid's images were all done before (and grid.png kept) or are all
  # completed in this run (outputs.finished): each process left its rows.
  grid_done = plan.done[:plan.grid_rows].all()
  writer = outputs.BatchWriter(out, names, _grid_inputs(plan),
                               np.full(n, grid_done), plan.grid_rows)
  if not grid_done:
    for i in range(share.count):
      block = dataclasses.replace(share, index=i).rows(n)
      if len(block) and block[0] < plan.grid_rows:  # it had rows of the grid
        path = processes.grid_rows_path(out, i)
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
          f'rows of {outputs.text(out / outputs.GRID_FILE)}; rerun without '
          '--resume')
  if s.evaluate:
    _add_written_metrics(writer, plan, np.arange(n))
  resumed = sum(s['resumed'] for s in statuses)
  final_losses = np.concatenate([np.asarray(s['final_losses'], np.float32)
                                 for s in statuses])
  return writer, resumed, final_losses
