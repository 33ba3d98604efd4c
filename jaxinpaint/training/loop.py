"""The training loop: `train_and_evaluate` runs or resumes a work dir's run.

A run checks its inputs before it writes anything, jits the step
(`step.py`) over the training mesh and starts from the work dir's last
checkpoint, the networks of `config.train.init_from` or `config.seed`. It
then steps until `config.train.steps`, the time limit or SIGTERM/SIGINT,
logging metrics, sample grids and checkpoints on the way; at the end it
saves the finalized checkpoint (`finalize`: G's BatchNorm statistics
recalibrated for inference) and exports the model. The work dir's files
and stopping on a signal are in `workdir_files.py`, the progress bar,
metrics log and time limit in `progress.py`.
"""
import functools
import os
import signal
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jaxinpaint import data, errors, host_memory, models, sharding
from jaxinpaint.models import checkpoint
from jaxinpaint.training import config_schema, workdir_files
# As *_lib: `step` and `progress` name a step number and a Progress here.
from jaxinpaint.training import progress as progress_lib
from jaxinpaint.training import step as step_lib


def warm_start_state(config, nets, init_from):
  """A fresh TrainState (fresh optimizers, rng from config.seed) holding the
  networks of `init_from` (an exported model or a work dir) and its step."""
  source = checkpoint.load_config(init_from)
  theirs = {k: source.model.get(k) for k in ('arch', 'resolution', 'width',
                                             'z_dim')}
  ours = {k: config.model[k] for k in theirs}
  if theirs != ours:
    raise ValueError(f'config.train.init_from={init_from}: a model of other '
                     f'networks ({theirs}; this run: {ours})')
  _, variables, step = checkpoint.load_inference_variables(init_from)
  fresh = step_lib.init_state(config, nets)
  d_params = {k: variables[k]['params'] for k in fresh.d_params}
  d_stats = {k: variables[k]['batch_stats'] for k in fresh.d_stats}
  g_params = variables['generator']['params']
  # Training continues from the source's saved inference statistics (the
  # recalibrated ones; a checkpoint not finalized saved its running
  # averages there); the EMA takes over from there.
  cast = lambda new, like: jax.tree.map(
      lambda a, b: jnp.asarray(a, b.dtype), new, like)
  g_stats = cast(variables['generator']['batch_stats'], fresh.g_stats)
  opt = step_lib.make_optimizer(config.train)
  g_params, d_params = (cast(g_params, fresh.g_params),
                        cast(d_params, fresh.d_params))
  return fresh.replace(
      step=jnp.asarray(step, jnp.int32), g_params=g_params, g_stats=g_stats,
      # A copy: g_stats is donated with the state, g_stats_eval beside it.
      g_stats_eval=jax.tree.map(jnp.copy, g_stats),
      d_params=d_params, d_stats=cast(d_stats, fresh.d_stats),
      g_opt_state=opt.init(g_params), d_opt_state=opt.init(d_params))


def check_data_size(config, num_images):
  """Refuses a set smaller than what one draw takes: a batch (host data) or
  a whole step (data on the device); either would repeat images."""
  batch = config.train.batch_size
  if config.data.on_device:
    needed = config.train.n_critic * batch
    if num_images < needed:
      raise ValueError(
          f'config.data.on_device: the data set has {num_images} images, '
          f'but one step draws n_critic x batch_size = {needed}; use fewer '
          'or smaller batches, or more images')
  elif num_images < batch:
    raise ValueError(
        f'config.train.batch_size={batch}: the data set has {num_images} '
        f'images, but one batch draws {batch}; use a smaller batch or more '
        'images')


def _device_images(config, source, sharding):
  """The decoded set of `source` with `sharding` (replicated), after
  checking that it fits."""
  images = data.load_all(config.data, config.model.resolution, source)
  device = jax.local_devices()[0]
  free = host_memory.free_memory(device)
  # Half the free memory at most: the networks, optimizer states and
  # activations need the rest.
  if images.nbytes > free / 2:
    raise ValueError(
        f'config.data.on_device: the decoded set is '
        f'{images.nbytes / 2**30:.2f} GiB, {device.device_kind} has '
        f'{free / 2**30:.2f} GiB free (at most half of it is used for data); '
        'set config.data.on_device=False or use fewer images')
  return jax.make_array_from_callback(images.shape, sharding,
                                      lambda index: np.asarray(images[index]))


def _restore_for_resume(workdir, files, abstract_state):
  """The work dir's newest checkpoint; a damaged one is refused naming its
  step and, if there is one, the newest intact step before it."""
  step = files.last_saved
  try:
    return checkpoint.restore_step(
        workdir, step, ocp.args.StandardRestore(abstract_state),
        files.manager())
  except errors.CheckpointBeingWrittenError:
    raise
  except errors.DamagedCheckpointError as e:
    intact = checkpoint.intact_step_before(workdir, step)
    folder = os.path.join(workdir, checkpoint.CHECKPOINT_DIR, str(step))
    raise errors.DamagedCheckpointError(
        f'{e}; ' + (f'the checkpoint of step {intact} is intact: delete '
                    f'{folder} to resume from step {intact}' if intact is not
                    None else 'no earlier checkpoint is intact: use a new '
                    'workdir')) from e


def _check_export_to(path, workdir):
  """export_to must be an empty folder or none, and neither the work dir,
  inside it nor holding it: the export would land among the checkpoints
  (or the work dir in the export), found only at the end of training."""
  if not path:
    return
  label = f'config.train.export_to={path}'
  export, work = Path(path).resolve(), Path(workdir).resolve()
  if export == work or work in export.parents:
    raise ValueError(f'{label}: is the workdir {workdir} or inside it; '
                     'export to a folder of its own')
  if export in work.parents:
    raise ValueError(f'{label}: holds the workdir {workdir}; export to a '
                     'folder of its own')
  checkpoint.check_new_model_dir(path, label)


def _unfinished(state):
  """The state as a checkpoint before the end saves it: not finalized, with
  the running averages as the inference statistics (the best there is
  without a recalibration; the step's metadata says they are not
  recalibrated, `checkpoint.is_finalized`)."""
  return state.replace(g_stats_eval=state.g_stats)


class _Run(NamedTuple):
  """What the parts of one `train_and_evaluate` call share."""
  config: Any
  workdir: Any  # as the caller spelled it: messages name it so
  files: workdir_files.RunFiles
  time_limit: progress_lib.TimeLimit


def train_and_evaluate(config, workdir, clock=None):
  """Trains (or resumes) in `workdir`; returns the final TrainState.

  Writes workdir/metrics.jsonl, workdir/samples/step_XXXXXX.png, orbax
  checkpoints under workdir/checkpoints and workdir/config.json.

  `clock`: the time source of `config.train.time_limit` (seconds, any
  origin); by default the wall clock from the process's start. A test gives
  a fake one, so where the limit stops a run does not depend on the
  machine's speed; the limit then counts from the call.
  """
  time_limit, source, listing = _check_run(config, workdir, clock)
  nets = models.build_models(config.model)
  functions = step_lib.build_train_functions(
      config, nets, sharding.training_mesh(), config.data.on_device)
  files = workdir_files.RunFiles(workdir, config, listing)
  state = _start_state(config, workdir, nets, functions, files)
  start = int(jax.device_get(state.step))
  next_input, batch_iter = _real_inputs(config, source, functions, start)
  sample = _sampler(config, nets)
  logging.info('training on %s with %d devices from step %d',
               source.describe(), jax.device_count(), start)
  run = _Run(config, workdir, files, time_limit)
  progress = progress_lib.Progress(config, workdir, files, time_limit, start)
  try:
    state, step = _train_steps(run, progress, state, start, functions.step,
                               next_input, sample)
    if step < config.train.steps:
      _stopped_by_time_limit(run, progress, step, start)
    state = _save_final(run, state, step, nets)
    if batch_iter is not None and batch_iter.num_skipped:
      files.log([{'step': step, 'skipped_unreadable_images':
                  batch_iter.num_skipped}])
      logging.warning('skipped %d unreadable images (see the log above)',
                      batch_iter.num_skipped)
  finally:
    progress.close()
    files.close()
    if batch_iter is not None:
      batch_iter.close()
  return state


def _check_run(config, workdir, clock):
  """Checks all that can be checked before anything is written, and opens
  the data; returns (the run's time limit, the data source, its listing:
  `data.listing_record`)."""
  # Bad input fails here, before anything is written.
  config_schema.validate(config)
  time_limit = progress_lib.TimeLimit(config, clock)
  workdir_files.check_outside_data(workdir, config)
  # Opened once: the batches read this source (an npz source holds every
  # image in memory).
  source = data.open_source(config.data)
  check_data_size(config, len(source))
  sharding.check_batch_size(config.train.batch_size)
  workdir_files.check_workdir(workdir)
  workdir_files.check_resumable(workdir, config)
  listing = data.listing_record(source)
  workdir_files.check_same_data(workdir, config, listing)
  _check_export_to(config.train.export_to, workdir)
  return time_limit, source, listing


def _start_state(config, workdir, nets, functions, files):
  """The state a run starts from, on the mesh: the work dir's last
  checkpoint (a resumed run), else the networks of config.train.init_from,
  else a fresh state from config.seed."""
  if files.last_saved is not None:
    return _restore_for_resume(workdir, files, functions.abstract_state)
  if config.train.init_from:
    return jax.device_put(
        warm_start_state(config, nets, config.train.init_from),
        functions.state_sharding)
  return functions.init()


def _real_inputs(config, source, functions, start):
  """(next_input, batch_iter): next_input() gives the `inputs` of the
  step (`step.TrainFunctions`); batch_iter is the host's batch iterator
  (None with config.data.on_device), which the caller closes."""
  n_critic, res = config.train.n_critic, config.model.resolution
  if config.data.on_device:
    images = _device_images(config, source, functions.input_sharding)
    return (lambda: images), None
  global_shape = (n_critic, config.train.batch_size, res, res, 3)
  # Each generator step consumes n_critic real batches: resuming at step
  # s continues at batch s·n_critic of the same deterministic sequence.
  batch_iter = data.make_batch_iterator(
      config.data, res, config.train.batch_size, seed=config.seed,
      start_batch=start * n_critic, process_index=jax.process_index(),
      process_count=jax.process_count(), source=source)

  def next_input():
    local = np.stack([next(batch_iter) for _ in range(n_critic)])
    return jax.make_array_from_process_local_data(
        functions.input_sharding, local, global_shape)

  return next_input, batch_iter


def _sampler(config, nets):
  """state -> the sample grid's 64 images on the host: G of one fixed z
  (from config.seed) in inference mode, with the running statistics."""
  z = models.sample_latent(
      jax.random.fold_in(jax.random.key(config.seed), 2**30),
      (64, config.model.z_dim), config.model.arch)
  generate = jax.jit(functools.partial(step_lib.sample_images,
                                       nets['generator']))
  return lambda state: jax.device_get(
      generate(state.g_params, state.g_stats, z))


def _train_steps(run, progress, state, start, step_fn, next_input, sample):
  """Steps from `start` until config.train.steps, the time limit or
  SIGTERM/SIGINT, with the metrics, samples and checkpoints (not
  finalized) on the way; returns (state, step). A signal saves a
  checkpoint and raises errors.StoppedBySignal."""
  config, files = run.config, run.files
  total = config.train.steps
  # Forced CPU devices can deadlock in collectives when steps queue up
  # behind each other on a small machine; real accelerators need no sync.
  sync_each_step = jax.devices()[0].platform == 'cpu' and len(jax.devices()) > 1
  step = start
  with workdir_files.StopRequest() as stop:
    timed_out = run.time_limit.reached()
    while step < total and stop.signum is None and not timed_out:
      state, metrics = step_fn(state, next_input())
      if sync_each_step:
        jax.block_until_ready(state)
      step += 1
      progress.add(step, metrics)
      if step % config.train.log_every == 0:
        progress.flush()
      if step % config.train.sample_every == 0:
        files.sample_grid(step, sample(state))
      # Read before the periodic checkpoint: a run that stops at this
      # step saves it once, finalized, at the end (not the running averages).
      timed_out = run.time_limit.reached()
      if (step % config.train.checkpoint_every == 0 and step < total
          and not timed_out and stop.signum is None):
        progress.flush()
        files.save(_unfinished(state), step, finalized=False)
    progress.flush()
    if stop.signum is not None:
      files.save(_unfinished(state), step, finalized=False)
      raise errors.StoppedBySignal(
          f'stopped by {signal.Signals(stop.signum).name} at step {step}; '
          f'checkpoint saved in {run.workdir}; rerun the same command to '
          'resume', stop.signum)
  return state, step


def _stopped_by_time_limit(run, progress, step, start):
  """A run the time limit stopped at `step`: errors.TimeLimitTooShort if it
  trained no step (nothing is saved), else a line saying where."""
  limit = run.time_limit
  if step == start:
    raise errors.TimeLimitTooShort(
        f'config.train.time_limit={limit.seconds:g}: shorter than the '
        f'start-up ({limit.clock() - limit.origin:.0f} s from the start to '
        'load the data and compile): no step was trained and nothing was '
        'saved; raise the limit')
  progress.write(f'time limit of {limit.seconds:g} s reached at step {step}')


def _save_final(run, state, step, nets):
  """Saves the finalized checkpoint of `step` and exports the model to
  config.train.export_to; returns the state, finalized. A finished run
  resumed has both already, and keeps them."""
  config, files, workdir = run.config, run.files, run.workdir
  export_to = config.train.export_to
  missing_export = (export_to and files.is_chief
                    and not checkpoint.is_exported_model(export_to))
  if step != files.last_saved or missing_export:
    # Trained in this run, or a finished run whose export is missing (an
    # export stopped by a signal leaves none, see export_inference). A
    # checkpoint saved by a signal is not finalized: finalized here for
    # the export (the work dir's checkpoint stays as it is; loading it
    # recalibrates the same).
    if (step != files.last_saved
        or not checkpoint.is_finalized(workdir, files.last_saved)):
      state, record = finalize(state, nets, config)
      files.log([record])
    files.save(state, step, finalized=True)
    if missing_export:
      checkpoint.export_inference(
          export_to, config,
          checkpoint.inference_variables(jax.device_get(state)), step,
          jnp.dtype(config.train.export_dtype))
  return state


def finalize(state, nets, config):
  """Recalibrates G's statistics for inference; reports how much that moved.

  `bn_eval_gap_*` is the mean |G_inference(z) − G_training(z)| on a fixed z
  with the EMA and with the recalibrated statistics: a large EMA gap means
  the running statistics had gone stale.
  """
  generator = nets['generator']
  g_stats_eval = models.recalibrated_stats(generator, state.g_params,
                                           state.g_stats, config)
  key, batch = models.recalibration_key(config), config.train.batch_size
  z = models.sample_latent(jax.random.fold_in(key, 1),
                           (batch, config.model.z_dim), config.model.arch)
  train_mode, _ = step_lib.generate(nets, state, z, True)

  def gap(stats):
    inference = step_lib.sample_images(generator, state.g_params, stats, z)
    return float(jnp.abs(inference - train_mode).mean())

  record = {'step': int(state.step), 'bn_eval_gap_ema': gap(state.g_stats),
            'bn_eval_gap_recalibrated': gap(g_stats_eval)}
  logging.info('BatchNorm recalibration: %s', record)
  return state.replace(g_stats_eval=g_stats_eval), record
