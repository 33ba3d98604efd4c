"""A training work dir: its checks, its files, and stopping on a signal.

`check_workdir` and `check_resumable` run before anything is written;
`RunFiles` writes metrics.jsonl, samples/, checkpoints/ and config.json,
each on first use; `StopRequest` turns SIGTERM/SIGINT into a flag the
training loop polls between steps, so that it can save a checkpoint first.
"""
import json
import signal
import threading
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jaxinpaint import checkpoint, grids

METRICS_FILE = 'metrics.jsonl'
SAMPLES_DIR = 'samples'


def check_workdir(workdir):
  """Fails early, with one line and nothing created, if `workdir` can't be
  written; the directory itself is made at the first write."""
  path = Path(workdir).absolute()
  if path.exists() and not path.is_dir():
    raise ValueError(f'--workdir {workdir}: exists and is not a directory')
  checkpoint.check_creatable_dir(path, f'--workdir {workdir}')


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
    'data.num_threads', 'data.prefetch_batches', 'data.cache'))


def _flat(tree, prefix=''):
  """{'train.steps': value, ...} of nested dicts."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


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
        f'--workdir {workdir} holds a run of other networks (config.model '
        f'{saved.get("model")}, asked {wanted["model"]}); use a new --workdir')
  if config.train.allow_config_change:
    return
  old, new = _flat(saved), _flat(wanted)
  changed = [f'--config.{k}={new[k]!r} (was {old[k]!r})'
             for k in sorted(old.keys() & new.keys())
             if k not in RUN_KEYS_FREE and old[k] != new[k]]
  if changed:
    raise ValueError(
        f'--workdir {workdir} holds a run of another config: '
        f'{", ".join(changed)}; resume with its values, use a new --workdir, '
        'or pass --config.train.allow_config_change=True to continue with '
        'these (the old config is kept as config.<step>.json)')


class StoppedBySignal(Exception):
  """SIGTERM/SIGINT (`signum`) arrived; a checkpoint was saved."""

  def __init__(self, message, signum=signal.SIGINT):
    super().__init__(message)
    self.signum = signum


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
  """

  def __init__(self, workdir, config):
    self.workdir, self.config = Path(workdir), config
    self.is_chief = jax.process_index() == 0
    self._metrics = None
    self._manager = None
    self.last_saved = checkpoint.latest_step(workdir)
    self._config_kept = self.last_saved is None  # nothing to keep

  def manager(self):
    if self._manager is None:
      self._manager = checkpoint.manager(
          self.workdir, keep=self.config.train.keep_checkpoints)
    return self._manager

  def save(self, state, step):
    if step == self.last_saved:
      return
    if self.is_chief:
      self.workdir.mkdir(parents=True, exist_ok=True)
      self._keep_old_config()
      checkpoint.save_config(self.workdir, self.config)
    self.manager().save(step, args=ocp.args.StandardSave(state), force=True)
    self.last_saved = step

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
    if not self.is_chief:
      return
    if self._metrics is None:
      self.workdir.mkdir(parents=True, exist_ok=True)
      self._metrics = open(self.workdir / METRICS_FILE, 'a')
    for r in records:
      self._metrics.write(json.dumps(r) + '\n')
    self._metrics.flush()

  def sample_grid(self, step, images):
    if self.is_chief:
      grids.save_grid(self.workdir / SAMPLES_DIR / f'step_{step:06d}.png',
                      images)

  def close(self):
    if self._manager is not None:
      self._manager.wait_until_finished()
    if self._metrics is not None:
      self._metrics.close()
