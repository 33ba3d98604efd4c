"""Executes a checked `inpaint.py` run (`cli.inpaint` parses and plans).

The images stream: `batched.inpaint_batches` reads each batch when it
is due (the next one on a thread), completes it and hands it to
`writer.BatchWriter`, which writes its PNGs and metrics rows at once; only
per-image numbers (N floats) and the grid's first rows are kept, so memory
is bounded by the batch size whatever the number of images. What this
process completes and writes is its role's (`roles`): all of it for one
process; for one of several, its own block of images only (and it reads
only those), logging each batch in its status file, and process 0 then
waits for the others and writes grid.png, metrics.csv and summary.json of
all of them.
"""
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from jaxinpaint import atomic, errors
from jaxinpaint.inpaint_job import (identity_columns, inputs, outputs,
                                    processes, roles)
from jaxinpaint.models import loading

PAPER_STEPS = 1000
CPU_DEFAULT_STEPS = 200


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
  """`execute`, but for the lock's release."""
  s, out, n = plan.settings, plan.out, len(plan.names)
  search = _set_up_search(plan)
  record = dict(plan.record, **{'model step': int(search.model.step),
                                '--steps': search.steps,
                                '--dtype': search.dtype})
  outputs.check_run_settings(out, record, s.resume)
  role = roles.for_plan(plan)
  block = role.block(n)
  todo = block[~plan.done[block]]
  batch = _checked_batch(plan, search, len(todo)) if len(todo) else 0
  # Every refusal is above: nothing in OUT has changed yet.
  if role.is_chief:
    try:
      atomic.write_json(out / outputs.RUN_FILE, record)
    except OSError as e:
      raise errors.RunError(f'cannot write {outputs.text(out)}/'
                            f'{outputs.RUN_FILE}: {e.strerror or e}') from e

  writer = role.open_writer()
  try:
    role.start(todo=len(todo), resumed=len(block) - len(todo))
    if len(todo) and not s.evaluate and role.is_chief:
      stale = _remove_stale_metrics(out)
      if stale:
        inputs.note(f'note: removed {" and ".join(stale)} of an earlier '
                    'run with --evaluate: they would not describe the '
                    'images completed now (rerun with --evaluate for '
                    'metrics)')
    if len(todo) < len(block):
      inputs.note(f'--resume: {len(block) - len(todo)} of {len(block)} '
                  f'images are finished in {outputs.text(out)}/; skipping '
                  'them')
    final_losses = (_complete(plan, search, role, writer, todo, batch)
                    if len(todo) else np.zeros(0, np.float32))
    # Process 0 of several: the writer, counts and losses of all processes.
    writer, resumed, final_losses = role.finish(
        writer, len(block) - len(todo), final_losses)
    if not role.is_chief:
      return Outcome({}, len(todo), resumed)
    summary = _summary(plan, search, record, writer, resumed, final_losses)
    writer.finish(summary if s.evaluate else None)
  except KeyboardInterrupt as e:
    what = ('terminated by SIGTERM' if isinstance(e, errors.Terminated)
            else 'interrupted')
    raise errors.Interrupted(
        f'{what}: {writer.complete} of {n} images are complete in '
        f'{outputs.text(out)}/; {writer.resume_hint()}') from e
  finally:
    writer.close()
    role.close()
  return Outcome(summary, n - resumed, resumed)


@dataclasses.dataclass(frozen=True)
class _Search:
  """What completes the images, as the flags and the model decide."""
  model: Any  # models.Model
  devices: list
  loss_name: str | None  # None: conditional completion (its own loss)
  spec: Any  # the loss's weights (completion.LossSpec, ConditionalSpec)
  steps: int
  dtype: str


def _set_up_search(plan: Plan) -> _Search:
  """Picks the devices, loads the model and resolves the flags' defaults."""
  # Here, not at the top: inpaint.py's --help and checks need no JAX.
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import completion, sharding
  s = plan.settings
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
  return _Search(model, devices, loss_name, spec, steps, dtype)


def _checked_batch(plan: Plan, search: _Search, count: int) -> int:
  """The batch that completes `count` images (>= 1) on the devices; an
  InputError naming the flag if its search cannot fit in their memory
  (before anything is written or compiled)."""
  # pylint: disable=g-import-not-at-top
  from jaxinpaint import sharding
  from jaxinpaint.completion import batched
  # pylint: enable=g-import-not-at-top
  s, devices = plan.settings, search.devices
  batch = sharding.round_batch_size(s.batch_size, count, len(devices))
  with errors.naming_flags(restarts='--restarts', batch_size='--batch-size'):
    batched.check_search_memory(search.model, batch, s.restarts, devices)
  return batch


def _remove_stale_metrics(out: Path) -> list:
  """`outputs.remove_stale_metrics`, a failure a RunError."""
  try:
    return outputs.remove_stale_metrics(out)
  except OSError as e:
    raise errors.RunError(f'cannot remove the metrics of an earlier run in '
                          f'{outputs.text(out)}/: {e.strerror or e}') from e


def _complete(plan: Plan, search: _Search, role: roles.Role, writer,
              todo, batch: int) -> np.ndarray:
  """Completes the images `todo` (indices, at least one) batch by batch
  (`batch` of them at a time, `_checked_batch`), each written by `role` as
  it is done; returns their final losses (K,)."""
  # pylint: disable=g-import-not-at-top
  from jaxinpaint import completion
  from jaxinpaint.completion import batched
  # pylint: enable=g-import-not-at-top
  s, model, devices = plan.settings, search.model, search.devices
  _announce(role.who, len(todo), model.step, search.steps, s, devices, batch)

  def on_batch(start, stop, results):
    role.write_batch(writer, todo[start:stop], results, completed=stop)

  options = completion.Options(steps=search.steps, restarts=s.restarts,
                               blend=s.blend, dtype=s.dtype,
                               tuning=completion.Tuning(steps=s.tune_steps))
  # With --evaluate the inputs are whole images: completion never reads
  # their hole pixels (the grid shows them damaged, `roles`).
  results = batched.inpaint_batches(
      model, _BlockReader(plan.images, todo),
      _BlockReader(plan.mask, todo) if hasattr(plan.mask, 'read')
      else plan.mask, todo, spec=search.spec, options=options,
      batch_size=s.batch_size, seed=s.seed, reference=plan.reference,
      on_batch=on_batch, devices=devices, progress=role.batch_progress,
      keep=('final_loss',))
  return results['final_loss'].min(axis=1)


def _summary(plan: Plan, search: _Search, record: dict, writer, resumed: int,
             final_losses) -> dict:
  """summary.json: the metrics (with --evaluate) and the run's settings."""
  from jaxinpaint.ops import metrics  # pylint: disable=g-import-not-at-top
  s, model = plan.settings, search.model
  summary = {}
  if s.evaluate:
    summary = metrics.summarize(*(writer.per_image[k]
                                  for k in outputs.METRIC_KEYS))
    summary.update(identity_columns.summary(writer.identity,
                                            writer.per_image))
  summary.update(
      method='conditional' if plan.reference is not None else 'inpainting',
      loss=search.loss_name or 'conditional',
      loss_weights=dataclasses.asdict(search.spec), steps=search.steps,
      restarts=s.restarts, tune_steps=s.tune_steps,
      batch_size=s.batch_size, seed=s.seed, mask=record['--mask'],
      blend=s.blend, input=record['--input'],
      reference=record['--reference'], checkpoint=record['--checkpoint'],
      checkpoint_step=model.step,
      model={k: model.config.model[k]
             for k in ('arch', 'resolution', 'width', 'z_dim')},
      dtype=search.dtype, resumed=resumed,
      # Of the images completed in this run (None: all were resumed).
      final_loss_mean=(float(final_losses.mean()) if len(final_losses)
                       else None),
      device=search.devices[0].device_kind)
  return summary


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


def _announce(who, count, model_step, steps, s: Settings, devices, batch):
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
