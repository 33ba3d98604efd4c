"""Checkpoints: orbax over one state pytree, plus the run's config as JSON.

Layout of a model directory (a training work dir or an exported model):
  DIR/config.json           the ConfigDict that built the networks
  DIR/checkpoints/<step>/   orbax StandardSave of a pytree whose fields include
                            g_params, g_stats_eval, d_params (and, in a
                            training work dir, everything needed to resume),
                            with the step's custom metadata {"finalized": bool}
  DIR/checksums.json        exported models only: the SHA-256 of every array
                            of that pytree, checked when the model is loaded

"Finalized" says whether a step's `g_stats_eval` (G's BatchNorm statistics
for inference) were recalibrated for that step's weights: true for the
checkpoint written at the end of training (training's `finalize`) and for an
exported model, false for a periodic or a signal's checkpoint, whose
`g_stats_eval` are the running averages. A checkpoint written before the
flag existed counts as not finalized. `loading.load_model` recalibrates
what is not finalized.
"""
import contextlib
import gc
import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from jaxinpaint import errors


CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'
CHECKSUM_FILE = 'checksums.json'
# What config.json must hold to build the networks.
MODEL_KEYS = ('arch', 'resolution', 'width', 'z_dim')


# The key of a step's custom metadata (orbax) that says it is finalized.
FINALIZED = 'finalized'


def manager(workdir, keep: int = 2, create: bool = True):
  """An orbax CheckpointManager under DIR/checkpoints."""
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=create))


def save_config(workdir, config):
  Path(workdir, CONFIG_FILE).write_text(config.to_json(indent=2))


def load_config(workdir) -> ml_collections.ConfigDict:
  path = Path(workdir, CONFIG_FILE)
  if not path.is_file():
    raise FileNotFoundError(
        f'{workdir}: not a jaxinpaint model directory (no {CONFIG_FILE}); '
        'expected a training work dir or an exported model')
  try:
    saved = json.loads(path.read_text(encoding='utf-8'))
  except ValueError as e:  # bad JSON or bad UTF-8
    raise ValueError(f'{path}: not a valid config file '
                     f'({str(e).splitlines()[0]})') from e
  if not isinstance(saved, dict):
    raise ValueError(f'{path}: not a valid config file (expected a JSON '
                     f'object, got {type(saved).__name__})')
  # The networks are built from these: a config without them (e.g. `{}`)
  # would fail later with an AttributeError deep in the model code.
  model = saved.get('model')
  missing = [k for k in MODEL_KEYS
             if not isinstance(model, dict) or k not in model]
  if missing:
    raise ValueError(f'{path}: not a valid config file (no model.'
                     f'{", model.".join(missing)}; expected the config.json '
                     'that training wrote)')
  return ml_collections.ConfigDict(saved)


def latest_step(workdir):
  """The newest complete checkpoint's step, or None."""
  if not Path(workdir, CHECKPOINT_DIR).is_dir():
    return None
  return manager(workdir, create=False).latest_step()


def restore_raw(workdir, step=None, attempts: int = 3, wait: float = 2.0):
  """The saved pytree as nested dicts of arrays on this host's first device.

  Needs no target structure, and loads checkpoints written by any number of
  devices or processes (their shardings are replaced by one device).

  A work dir that training is writing may change under the reader (a new
  step being written, an old one deleted): the newest step is then read
  again, up to `attempts` times, `wait` seconds apart. Raises
  errors.CheckpointBeingWrittenError if it still cannot be read then,
  errors.DamagedCheckpointError (naming the step) for a damaged checkpoint.
  """
  fallback = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  args = ocp.args.StandardRestore(fallback_sharding=fallback)
  for attempt in range(attempts):
    mgr = manager(workdir, create=False)
    chosen = mgr.latest_step() if step is None else step
    if chosen is None:
      writing = steps_being_written(workdir)
      if writing and attempt + 1 < attempts:
        time.sleep(wait)
        continue
      raise FileNotFoundError(
          f'{workdir}: no checkpoint under {CHECKPOINT_DIR}/ '
          + (f'yet: the checkpoint of step {writing[-1]} is being written; '
             'retry when training has saved it' if writing
             else '(has training saved one?)'))
    try:
      return restore_step(workdir, chosen, args, mgr), int(chosen)
    except errors.CheckpointBeingWrittenError:
      if step is not None or attempt + 1 == attempts:
        raise
      time.sleep(wait)
  raise AssertionError('unreachable')


# orbax writes a step to `<step>.orbax-checkpoint-tmp-<time>`, then renames it.
_BEING_WRITTEN = re.compile(r'^(\d+)\.orbax-checkpoint-tmp')


def steps_being_written(workdir) -> list:
  """The steps whose checkpoints are being written (orbax's temporary
  folders), sorted."""
  folder = Path(workdir, CHECKPOINT_DIR)
  if not folder.is_dir():
    return []
  return sorted(int(m.group(1)) for m in map(_BEING_WRITTEN.match,
                                             os.listdir(folder)) if m)


def restore_step(workdir, step, args, mgr=None):
  """`mgr.restore(step, args=args)` with one-line errors: raises
  errors.CheckpointBeingWrittenError when training is changing the work dir (the
  step was deleted meanwhile, or another is being written),
  errors.DamagedCheckpointError naming the step otherwise."""
  mgr = mgr or manager(workdir, create=False)
  held = _StderrHeldBack()
  try:
    with held:
      try:
        restored = mgr.restore(step, args=args)
      except Exception:
        # The reads orbax abandoned also leave tasks whose errors asyncio
        # logs when they are collected: that is this error again. One
        # filter object: adding it again is a no-op, so failures do not pile
        # filters onto the process's logger.
        logging.getLogger('asyncio').addFilter(_abandoned_read_filter)
        _drop_abandoned_reads()
        held.drain()
        raise
    held.replay()
    return restored
  except Exception as e:  # pylint: disable=broad-except
    # orbax and tensorstore raise many types (a bare Exception for a
    # missing array file).
    folder = Path(workdir, CHECKPOINT_DIR, str(step))
    writing = steps_being_written(workdir)
    if writing or not folder.exists():
      now = (f'the checkpoint of step {writing[-1]} is being written'
             if writing else f'{folder} was deleted')
      raise errors.CheckpointBeingWrittenError(
          f'{workdir}: cannot read the checkpoint of step {step}: {now} '
          '(is training running there?); retry when it has saved the '
          'checkpoint') from e
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise errors.DamagedCheckpointError(
        f'{workdir}: the checkpoint of step {step} is damaged, a file under '
        f'{folder} is missing or truncated ({type(e).__name__}: '
        f'{first[:160]})') from e


def _abandoned_read_filter(record) -> bool:
  """asyncio's 'exception was never retrieved' of a failed restore: dropped."""
  return 'exception was never retrieved' not in record.getMessage()


# orbax's own code: the coroutines of its reads live there.
_ORBAX_DIR = Path(ocp.__file__).resolve().parent


def _is_abandoned_read(unraisable) -> bool:
  """Whether a `sys.unraisablehook` report comes from a read that a failed
  restore abandoned: tensorstore ending it calls the closed event loop's
  call_soon_threadsafe from C++ (no Python frame above that one), or
  orbax's read coroutine, closed when it is collected, turns the
  GeneratorExit into an Exception."""
  obj, error, tb = (unraisable.object, unraisable.exc_value,
                    unraisable.exc_traceback)
  if inspect.iscoroutine(obj):
    return _ORBAX_DIR in Path(obj.cr_code.co_filename).resolve().parents
  # uvloop's Cython frames are named 'uvloop.loop.Loop.call_soon_threadsafe'
  # (its policy is in force wherever uvicorn ran, e.g. beside the demo).
  return (isinstance(error, RuntimeError) and tb is not None
          and tb.tb_frame.f_code.co_name.rsplit('.', 1)[-1]
          == 'call_soon_threadsafe'
          and 'Event loop is closed' in str(error))


def _drop_abandoned_reads():
  """Makes `sys.unraisablehook` drop the reports of abandoned reads
  (`_is_abandoned_read`) and pass every other one to the hook it replaces.

  Holding stderr back (`_StderrHeldBack`) is not enough: a read ends, or
  its coroutine is collected, when it will: after the restore gave stderr
  back, during restore_raw's wait before it reads again, at exit. Once per
  process, as the asyncio filter above; installed again if something
  replaced it since.
  """
  previous = sys.unraisablehook
  if getattr(previous, 'drops_abandoned_reads', False):
    return

  def hook(unraisable):
    if not _is_abandoned_read(unraisable):
      previous(unraisable)

  hook.drops_abandoned_reads = True
  sys.unraisablehook = hook


class _StderrHeldBack(contextlib.AbstractContextManager):
  """Holds back what is written to file descriptor 2 (by Python or C++)
  while entered; `replay()` then writes it out. A failed restore drops it:
  tensorstore's reads still in flight when orbax gives up print hundreds of
  'Event loop is closed' tracebacks, which the one-line error replaces."""

  def __enter__(self):
    sys.stderr.flush()
    self._file = tempfile.TemporaryFile()
    self._saved = os.dup(2)
    os.dup2(self._file.fileno(), 2)
    return self

  def __exit__(self, *exc):
    sys.stderr.flush()
    os.dup2(self._saved, 2)
    os.close(self._saved)

  def drain(self, quiet: float = 0.5, limit: float = 10.0):
    """Waits until nothing was written for `quiet` seconds (at most `limit`
    seconds): the reads in flight have all reported."""
    size, start, last_change = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - start < limit:
      now_size = os.fstat(self._file.fileno()).st_size
      if now_size != size:
        size, last_change = now_size, time.monotonic()
      elif time.monotonic() - last_change > quiet:
        return
      time.sleep(0.05)
    gc.collect()

  def replay(self):
    self._file.seek(0)
    held = self._file.read()
    self._file.close()
    if held:
      sys.stderr.flush()
      os.write(2, held)


def intact_step_before(workdir, step):
  """The newest step before `step` whose checkpoint restores, or None."""
  for earlier in sorted((s for s in manager(workdir, create=False).all_steps()
                         if s < step), reverse=True):
    try:
      restore_raw(workdir, earlier)
      return int(earlier)
    except errors.DamagedCheckpointError:
      continue
  return None


def step_metadata(finalized: bool) -> dict:
  """The custom metadata to save a step with (`CheckpointManager.save`)."""
  return {FINALIZED: bool(finalized)}


def is_finalized(model_dir, step) -> bool:
  """Whether G's inference statistics of `step` are recalibrated for its
  weights: always for an exported model; for a work dir, what the step's
  metadata says (a checkpoint without the flag, from an older version, or
  one that cannot be read: not finalized, the safe answer)."""
  if is_exported_model(model_dir):
    return True
  # A manager that knows the item's handler reads the metadata without
  # warning that it could not restore the item.
  mgr = ocp.CheckpointManager(
      os.path.abspath(os.path.join(model_dir, CHECKPOINT_DIR)),
      options=ocp.CheckpointManagerOptions(create=False),
      item_handlers=ocp.StandardCheckpointHandler())
  try:
    metadata = mgr.metadata(step).custom_metadata or {}
  except Exception:  # pylint: disable=broad-except
    # orbax raises many types for a step deleted or damaged meanwhile.
    return False
  finally:
    mgr.close()
  return metadata.get(FINALIZED) is True


def load_inference_variables(model_dir):
  """(config, variables, step) of a model directory's newest checkpoint,
  as saved. The lower-level reader (warm starts use it); for completion use
  `loading.load_model`, which also recalibrates the statistics of a work
  dir whose checkpoint is not finalized (`is_finalized`).

  variables = {'generator': {'params', 'batch_stats'}, 'critic': {'params',
  ...}, 'patch_critic': ...}, float32, with G's batch statistics taken from
  `g_stats_eval` (the running averages in a checkpoint not finalized).
  An exported model's checksums are checked.
  """
  config = load_config(model_dir)
  raw, step = restore_raw(model_dir)
  check_checksums(model_dir, raw)
  return config, to_float32(inference_variables(raw)), step


def to_float32(tree):
  """Every array of `tree` as a float32 JAX array (models may be stored in
  bfloat16)."""
  return jax.tree.map(lambda x: jnp.asarray(np.asarray(x, np.float32)), tree)


def inference_variables(tree):
  """{'generator': {'params', 'batch_stats'}, 'critic': {'params'}, ...} of
  a saved pytree or TrainState (anything with g_params, g_stats_eval,
  d_params, d_stats), G's statistics being `g_stats_eval`."""
  get = (tree.get if isinstance(tree, dict)
         else lambda k, default=None: getattr(tree, k, default))
  variables = {'generator': {'params': get('g_params'),
                             'batch_stats': get('g_stats_eval')}}
  d_stats = get('d_stats', None) or {}
  for name, params in get('d_params').items():
    variables[name] = {'params': params}
    if d_stats.get(name):
      variables[name]['batch_stats'] = d_stats[name]
  return variables


def check_new_model_dir(path, label=None):
  """Raises ValueError unless `path` is an empty folder or can be made one.

  `label` (default: the path) starts the message, e.g. `--out DIR`.
  """
  label = label or str(path)
  path = Path(path).absolute()
  if path.exists() and not (path.is_dir() and not any(path.iterdir())):
    raise ValueError(f'{label}: exists and is not an empty directory; '
                     'nothing would be exported there')
  check_creatable_dir(path, label)


def check_creatable_dir(path, label):
  """Raises ValueError (starting with `label`) unless the nearest existing
  one of `path` and its parents is a writable directory: then `path` can be
  made with mkdir(parents=True). Creates nothing."""
  path = Path(path).absolute()
  existing = next(p for p in (path, *path.parents) if p.exists())
  if not existing.is_dir():
    raise ValueError(f'{label}: {existing} is not a directory')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ValueError(f'{label}: {existing} is not writable')


def array_checksums(tree):
  """{tree path: SHA-256 of the array's bytes (C order, stored dtype)} of
  every array of `tree`, paths like 'g_params/Dense_0/kernel'."""
  leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]
  return {jax.tree_util.keystr(path, simple=True, separator='/'):
          hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
          for path, x in leaves}


def write_checksums(model_dir, tree):
  """DIR/checksums.json for the arrays of `tree`, as saved in DIR."""
  Path(model_dir, CHECKSUM_FILE).write_text(json.dumps(
      {'sha256': array_checksums(tree)}, indent=2, sort_keys=True) + '\n')


def check_checksums(model_dir, tree):
  """Compares the restored `tree` with DIR/checksums.json. An exported
  model (a tree without G's running averages `g_stats`) must have one:
  export writes it last, so a model without it is incomplete; a training
  work dir has none.

  Raises:
    errors.ChecksumError: naming the model directory and the first bad array, or
      the missing checksums of an exported model.
  """
  path = Path(model_dir, CHECKSUM_FILE)
  if not path.is_file():
    if isinstance(tree, dict) and 'g_stats' not in tree:
      raise errors.ChecksumError(
          f'{model_dir}: an exported model without {CHECKSUM_FILE}: the '
          'export did not finish (export writes it last); export it again')
    return
  try:
    expected = json.loads(path.read_text(encoding='utf-8')).get('sha256')
  except (ValueError, AttributeError):  # bad JSON or UTF-8; not an object
    expected = None
  if not isinstance(expected, dict):
    raise errors.ChecksumError(f'{model_dir}: {CHECKSUM_FILE} is not a valid '
                        'checksum file (expected {"sha256": {array path: '
                        'hex digest}})')
  actual = array_checksums(tree)
  for key in sorted(expected.keys() | actual.keys()):
    if key not in actual:
      problem = f'is listed in {CHECKSUM_FILE} but missing from the checkpoint'
    elif key not in expected:
      problem = f'has no checksum in {CHECKSUM_FILE}'
    elif actual[key] != expected[key]:
      problem = f'does not match its SHA-256 in {CHECKSUM_FILE}'
    else:
      continue
    raise errors.ChecksumError(f'{model_dir}: array {key} {problem}: the model '
                        'files are damaged; export or copy the model again')


def is_exported_model(path) -> bool:
  """Whether `path` holds a complete export: its checksums are written
  last, inside a temporary folder renamed into place (export_inference)."""
  return Path(path, CHECKSUM_FILE).is_file()


def export_inference(model_dir, config, variables, step, dtype=jnp.bfloat16):
  """Writes the networks alone (no optimizer state) in `dtype`, with the
  SHA-256 of every array (checksums.json).

  Everything is written to a temporary folder beside `model_dir` that is
  renamed into place at the end: an export interrupted (a signal, a full
  disk) leaves no `model_dir`, never a partial one. `variables` must hold
  G's recalibrated statistics: an exported model is finalized by
  definition. It loads with `loading.load_model`, like a training dir.
  """
  check_new_model_dir(model_dir)
  final = Path(model_dir).absolute()
  tmp = final.with_name(f'.{final.name}.exporting')
  cast = lambda t: jax.tree.map(lambda x: jnp.asarray(x, dtype), t)
  tree = {'step': jnp.asarray(step),
          'g_params': cast(variables['generator']['params']),
          'g_stats_eval': cast(variables['generator']['batch_stats']),
          'd_params': {k: cast(v['params']) for k, v in variables.items()
                       if k != 'generator'},
          'd_stats': {k: cast(v['batch_stats']) for k, v in variables.items()
                      if k != 'generator' and 'batch_stats' in v}}
  shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted export
  try:
    tmp.mkdir(parents=True)
    save_config(tmp, config)
    mgr = manager(tmp, keep=1)
    mgr.save(step, args=ocp.args.StandardSave(tree),
             custom_metadata=step_metadata(finalized=True))
    mgr.wait_until_finished()
    mgr.close()
    write_checksums(tmp, tree)
    if final.is_dir():  # empty (checked): rename() takes only its place
      final.rmdir()
    os.rename(tmp, final)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
