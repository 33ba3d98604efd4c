"""A training work dir: its checks, its files, and stopping on a signal.

`check_workdir` and `check_resumable` run before anything is written;
`RunFiles` writes metrics.jsonl, samples/, checkpoints/ and config.json,
each on first use, and the same scalars and sample grids as TensorBoard
event files (events.out.tfevents.*, beside metrics.jsonl: `tensorboard
--logdir runs/` shows every work dir under runs/ as a run); `StopRequest`
turns SIGTERM/SIGINT into a flag the training loop (`loop.py`) polls
between steps, so that it can save a checkpoint first.
"""
import json
import signal
import threading
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from absl import logging

from jaxinpaint import atomic, errors
from jaxinpaint.data import grids
from jaxinpaint.models import checkpoint
from jaxinpaint.training import config_schema

METRICS_FILE = 'metrics.jsonl'
SAMPLES_DIR = 'samples'
# What the run reads (`data.listing_record`), compared when it resumes.
DATA_LISTING_FILE = 'data_listing.json'


def check_workdir(workdir):
  """Fails early, with one line and nothing created, if `workdir` can't be
  written; the directory itself is made at the first write."""
  path = Path(workdir).absolute()
  if path.exists() and not path.is_dir():
    raise ValueError(f'workdir {workdir}: exists and is not a directory')
  checkpoint.check_creatable_dir(path, f'workdir {workdir}')


def check_outside_data(workdir, config):
  """Refuses a work dir, or config.train.export_to, that is
  config.data.folder or inside it: the sample grids would become training
  images (a resumed run reading them too), the export would land among
  them."""
  folder = config.data.folder
  if not folder:
    return
  data_dir = Path(folder).resolve()
  export_to = config.train.export_to
  for label, path, why in (
      (f'workdir {workdir}', workdir,
       'its sample grids (samples/*.png) would become training images; use '
       'a workdir outside the data folder'),
      (f'config.train.export_to={export_to}', export_to,
       'the exported model would be written among the training images; '
       'export to a folder outside the data folder')):
    where = Path(path).resolve() if path else None
    if where is not None and (where == data_dir or data_dir in where.parents):
      raise ValueError(f'{label}: {"is" if where == data_dir else "is inside"}'
                       f' config.data.folder={folder}: {why}')


# Keys that may change when a work dir is resumed: when to stop (steps,
# time_limit), what is logged, sampled, checkpointed and kept, where and in
# which precision the model is exported, how the data is read (threads,
# prefetching, the decoded cache: the same images, `data.cache_record`)
# and how the step is run (critic_loop: the same arithmetic, scan or
# unrolled; multiprocess). None of them changes a step's arithmetic on
# given data: the resumed run is the one run, continued. init_from is read
# only when there is no checkpoint yet. Everything else (data, networks,
# optimizer, losses, batch size, seed, ...) changes the run.
RUN_KEYS_FREE = frozenset((
    'train.steps', 'train.time_limit', 'train.log_every',
    'train.sample_every', 'train.checkpoint_every', 'train.keep_checkpoints',
    'train.export_to', 'train.export_dtype', 'train.critic_loop',
    'train.multiprocess', 'train.init_from', 'train.allow_config_change',
    'train.allow_data_change', 'data.num_threads', 'data.prefetch_batches',
    'data.cache'))


def check_resumable(workdir, config):
  """A work dir may resume only a run of the same networks, and (unless
  `config.train.allow_config_change`) of the same values of every key
  that changes the run (all but RUN_KEYS_FREE)."""
  path = Path(workdir, checkpoint.CONFIG_FILE)
  if checkpoint.latest_step(workdir) is None or not path.is_file():
    return
  # load_config: a damaged config.json gives an error naming it.
  saved = checkpoint.load_config(workdir).to_dict()
  wanted = json.loads(config.to_json())
  if saved.get('model') != wanted['model']:
    raise ValueError(
        f'workdir {workdir} holds a run of other networks (config.model '
        f'{saved.get("model")}, asked {wanted["model"]}); use a new workdir')
  if config.train.allow_config_change:
    return
  old, new = config_schema.flatten(saved), config_schema.flatten(wanted)
  changed = [f'config.{k}={new[k]!r} (was {old[k]!r})'
             for k in sorted(old.keys() & new.keys())
             if k not in RUN_KEYS_FREE and old[k] != new[k]]
  if changed:
    raise ValueError(
        f'workdir {workdir} holds a run of another config: '
        f'{", ".join(changed)}; resume with its values, use a new workdir, '
        'or set config.train.allow_config_change=True to continue with '
        'these (the old config is kept as config.<step>.json)')


def check_same_data(workdir, config, listing):
  """A work dir may resume only on the data its run was saved with (the
  same image count and files, `data.listing_record`: `listing` is this
  run's), unless `config.train.allow_data_change`. A work dir without a
  saved listing (an older version's) is not checked."""
  path = Path(workdir, DATA_LISTING_FILE)
  if (config.train.allow_data_change or checkpoint.latest_step(workdir) is None
      or not path.is_file()):
    return
  try:
    saved = json.loads(path.read_text(encoding='utf-8'))
  except ValueError as e:  # bad JSON or UTF-8
    raise ValueError(f'{path}: not a valid data listing '
                     f'({str(e).splitlines()[0]}); delete it to resume '
                     'without comparing the data') from e
  saved = saved if isinstance(saved, dict) else {}
  then, now = saved.get('count'), listing['count']
  if then != now:
    change = f'has {now} images now, {then} then'
  elif saved.get('files_sha256') != listing['files_sha256']:
    # Only a digest is kept: which file changed cannot be told.
    change = (f'has other files than then (as many images, {now}, but other '
              'names or sizes)')
  else:
    return
  key = next(k for k in ('folder', 'npz', 'tfds_name') if config.data[k])
  raise ValueError(
      f'workdir {workdir}: the data changed since its run was saved: '
      f'config.data.{key}={config.data[key]} {change}; resume with the same '
      'data, use a new workdir, or set config.train.allow_data_change=True '
      'to continue with this data')


def _write_error(what, workdir, last_saved,
                 error: OSError) -> errors.WriteError:
  kept = (f'the checkpoint of step {last_saved} is kept' if last_saved
          is not None else 'no checkpoint was saved')
  return errors.WriteError(f'cannot write {what} in {workdir}: '
                           f'{error.strerror or error}; {kept}: make room and '
                           'rerun the same command to resume')


class StopRequest:
  """While entered, SIGTERM/SIGINT set `signum` instead of stopping the
  process; on exit the previous handlers are back.

  Python delivers signals to the main thread only, and only the main thread
  may install handlers: entered from any other thread this installs none
  (`installed` is False), `signum` stays None, and a signal does whatever
  the process's handlers do (by default SIGINT raises KeyboardInterrupt in
  the main thread and SIGTERM ends the process without a checkpoint).
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum = None
    self.installed = False
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
      self.installed = True
    return self

  def _handle(self, signum, frame):
    del frame
    self.signum = signum

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()
    self.installed = False


class RunFiles:
  """metrics.jsonl, samples/, checkpoints/ and config.json of a work dir.

  Nothing is created until the first write, so a run that fails on bad
  input leaves no trace; only process 0 writes metrics and samples.
  `listing`: what the run reads (`data.listing_record`), saved with each
  checkpoint for `check_same_data` (None: not saved).
  """

  def __init__(self, workdir, config, listing=None):
    self.workdir, self.config, self.listing = Path(workdir), config, listing
    self.is_chief = jax.process_index() == 0
    self._metrics = None
    self._events = None  # tensorboardX.SummaryWriter, made on first use
    self._manager = None
    self.last_saved = checkpoint.latest_step(workdir)
    self._config_kept = self.last_saved is None  # nothing to keep

  def manager(self):
    if self._manager is None:
      self._manager = checkpoint.manager(
          self.workdir, keep=self.config.train.keep_checkpoints)
    return self._manager

  def save(self, state, step, *, finalized: bool = False):
    """Saves a checkpoint; raises errors.WriteError (one line) if it cannot.

    `finalized`: whether the state's `g_stats_eval` are recalibrated for its
    weights (`loop.finalize`), recorded in the step's metadata
    (`checkpoint.is_finalized`).
    """
    if step == self.last_saved:
      return
    try:
      if self.is_chief:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._keep_old_config()
        checkpoint.save_config(self.workdir, self.config)
        if self.listing is not None:
          atomic.write_json(self.workdir / DATA_LISTING_FILE, self.listing)
      self.manager().save(
          step, args=ocp.args.StandardSave(state), force=True,
          custom_metadata=checkpoint.step_metadata(finalized))
      # Saving is asynchronous: its errors come out here.
      self.manager().wait_until_finished()
    except OSError as e:
      raise _write_error(f'the checkpoint of step {step}', self.workdir,
                         self.last_saved, e) from e
    self.last_saved = step

  def events(self):
    """The TensorBoard writer, opened at the first record (a new events
    file per run: a resumed run's steps continue the same curves), or None
    where tensorboardX is missing (a host whose packages were installed
    without dependencies): a warning, and training goes on without events."""
    if self._events is None:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      except ImportError:
        logging.warning('tensorboardX is not installed: no TensorBoard '
                        'events in %s (metrics.jsonl has the same numbers)',
                        self.workdir)
        self._events = False
        return None
      self.workdir.mkdir(parents=True, exist_ok=True)
      self._events = SummaryWriter(str(self.workdir), flush_secs=30)
    return self._events or None

  def _keep_old_config(self):
    """Before config.json is first replaced in a resumed run: if it
    differs from this run's, it is kept as config.<step>.json, the step
    up to which it applied."""
    if self._config_kept:
      return
    self._config_kept = True
    path = self.workdir / checkpoint.CONFIG_FILE
    try:
      old = path.read_text(encoding='utf-8')
      same = json.loads(old) == json.loads(self.config.to_json())
    except (OSError, ValueError):
      return  # none, or damaged (check_resumable would have said)
    kept = self.workdir / f'config.{self.last_saved}.json'
    if not same and not kept.exists():
      kept.write_text(old, encoding='utf-8')

  def log(self, records):
    """Appends to metrics.jsonl. The records of an earlier attempt past the
    checkpoint this run resumes from are dropped at the first write (they
    are computed again): no step appears twice."""
    if not self.is_chief:
      return
    path = self.workdir / METRICS_FILE
    try:
      if self._metrics is None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        _drop_records_after(path, self.last_saved)
        self._metrics = open(path, 'a')
      for r in records:
        self._metrics.write(json.dumps(r) + '\n')
      self._metrics.flush()
    except OSError as e:
      raise _write_error(METRICS_FILE, self.workdir, self.last_saved, e) from e
    events = self.events()
    if events is not None:
      for r in records:
        for tag, value in event_scalars(r).items():
          events.add_scalar(tag, value, r['step'], walltime=r.get('time'))
      events.flush()

  def sample_grid(self, step, images):
    if self.is_chief:
      grid = grids.make_grid(images)
      grids.save_png(self.workdir / SAMPLES_DIR / f'step_{step:06d}.png', grid)
      events = self.events()
      if events is not None:
        events.add_image('samples', grid, step, dataformats='HWC')
        events.flush()

  def close(self):
    if self._manager is not None:
      self._manager.wait_until_finished()
    if self._metrics is not None:
      self._metrics.close()
    if self._events:
      self._events.close()


def event_scalars(record) -> dict:
  """The TensorBoard scalars of one metrics.jsonl record: every number but
  its step and wall time (which are the event's own)."""
  return {k: float(v) for k, v in record.items()
          if k not in ('step', 'time') and isinstance(v, (int, float))
          and not isinstance(v, bool)}


def _drop_records_after(path: Path, step):
  """Rewrites metrics.jsonl without the records of steps after `step` (all
  of them for None), if it has any."""
  if not path.is_file():
    return
  lines = path.read_text(encoding='utf-8').splitlines(keepends=True)

  def keep(line):
    try:
      record_step = json.loads(line).get('step')
    except (ValueError, AttributeError):
      return False  # half a line: the earlier run died writing it
    return step is not None and isinstance(record_step, int) and (
        record_step <= step)

  kept = [line for line in lines if keep(line)]
  if len(kept) < len(lines):
    atomic.write_text(path, ''.join(kept))
