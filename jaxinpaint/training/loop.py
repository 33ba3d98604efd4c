"""WGAN-GP training (paper 3.1, 4): state, the jitted step, the loop.

One `train_step` is one generator iteration: `n_critic` critic updates (a
`lax.scan` over `n_critic` real batches) followed by one generator update.
It is a pure function of (state, real batches); the loop jits it over a
device mesh with the batch sharded on 'data' and the state replicated
(`build_train_functions`). The work dir's files and stopping on SIGTERM or
SIGINT are in `workdir_files.py`.
"""
import functools
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from flax import struct
from jax.sharding import NamedSharding, PartitionSpec as P
import tqdm

from jaxinpaint import data, errors, host_memory, models, sharding
from jaxinpaint.models import checkpoint
from jaxinpaint.training import config_schema, gan_losses, workdir_files


@struct.dataclass
class TrainState:
  step: jax.Array
  rng: jax.Array  # raw uint32 key data; step keys are fold_in(rng, step)
  g_params: Any
  g_stats: Any  # G's BatchNorm running statistics (EMA during training)
  # The statistics completion uses: recalibrated by `finalize` at the end,
  # the running averages in a checkpoint saved before (not finalized).
  g_stats_eval: Any
  d_params: Any  # {'critic': ..., 'patch_critic': ...}
  d_stats: Any  # DCGAN discriminator BatchNorm statistics ({} for the WGAN)
  g_opt_state: Any
  d_opt_state: Any


def make_optimizer(train_config):
  return optax.adam(train_config.learning_rate, b1=train_config.b1,
                    b2=train_config.b2)


def init_state(config, nets) -> TrainState:
  """Initial parameters and optimizer states from `config.seed`."""
  root = jax.random.key(config.seed)
  res = config.model.resolution
  image = jnp.zeros((1, res, res, 3))
  g_vars = nets['generator'].init(
      jax.random.fold_in(root, 0), jnp.zeros((1, config.model.z_dim)))
  d_params, d_stats = {}, {}
  for i, name in enumerate(critic_names(nets)):
    v = nets[name].init(jax.random.fold_in(root, i + 1), image)
    d_params[name] = v['params']
    if 'batch_stats' in v:
      d_stats[name] = v['batch_stats']
  opt = make_optimizer(config.train)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      rng=jax.random.key_data(jax.random.fold_in(root, 100)),
      g_params=g_vars['params'], g_stats=g_vars['batch_stats'],
      g_stats_eval=jax.tree.map(jnp.copy, g_vars["batch_stats"]),
      d_params=d_params, d_stats=d_stats,
      g_opt_state=opt.init(g_vars['params']), d_opt_state=opt.init(d_params))


def critic_names(nets):
  return [k for k in ('critic', 'patch_critic') if k in nets]


def _generate(nets, state, z, train: bool):
  """G(z) in training mode: (images, updated running statistics)."""
  images, updates = nets['generator'].apply(
      {'params': state.g_params, 'batch_stats': state.g_stats}, z,
      train=train, mutable=['batch_stats'])
  return images, updates['batch_stats']


def _critic_scores(nets, name, params, stats, x):
  """D(x) in training mode (batch statistics, for the DCGAN's BN critic)."""
  if not stats:
    return nets[name].apply({'params': params}, x), stats
  scores, updates = nets[name].apply(
      {'params': params, 'batch_stats': stats}, x, train=True,
      mutable=['batch_stats'])
  return scores, updates['batch_stats']


def _critic_loss(d_params, d_stats, nets, config, real, fake, key):
  total, metrics, new_stats = 0.0, {}, {}
  for i, name in enumerate(critic_names(nets)):
    prefix = '' if name == 'critic' else 'patch_'
    if config.train.loss == 'wgan_gp':
      fn = lambda x, name=name: nets[name].apply({'params': d_params[name]}, x)
      loss, m = gan_losses.wgan_gp_critic_loss(
          fn, real, fake, jax.random.fold_in(key, i), config.train.gp_weight)
      metrics.update({prefix + k: v for k, v in m.items()})
    else:  # 'gan': real and fake pass BN separately, as in DCGAN
      stats = d_stats.get(name, {})
      real_logits, stats = _critic_scores(nets, name, d_params[name], stats,
                                          real)
      fake_logits, stats = _critic_scores(nets, name, d_params[name], stats,
                                          fake)
      if stats:
        new_stats[name] = stats
      loss = gan_losses.gan_discriminator_loss(real_logits, fake_logits)
    metrics[prefix + 'critic_loss'] = loss
    total = total + loss
  return total, (metrics, new_stats)


def _generator_loss(g_params, state, nets, config, z):
  fake, g_stats = _generate(nets, state.replace(g_params=g_params), z, True)
  if config.train.loss == 'wgan_gp':
    loss = -sum(nets[n].apply({'params': state.d_params[n]}, fake).mean()
                for n in critic_names(nets))
  else:
    logits, _ = _critic_scores(nets, 'critic', state.d_params['critic'],
                               state.d_stats.get('critic', {}), fake)
    loss = gan_losses.gan_generator_loss(logits)
  return loss, g_stats


def _step_key(state):
  return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


def _critic_iteration_keys(key, i):
  """(key of the fake batch's z, key of the gradient penalties' ε)."""
  return jax.random.split(jax.random.fold_in(key, i))


def _generator_key(key, n_critic):
  return jax.random.fold_in(key, n_critic)


def step_randomness(state: TrainState, config, batch: int):
  """The random draws `train_step` makes from `state` (its rng and step),
  for another implementation of the same step (bench/train_step_torch.py):
    critic_z (n_critic, batch, z_dim): the z of each critic update's fakes;
    gp_eps (n_critic, critics, batch): each critic's interpolation ε
      (`gan_losses.interpolate`), critics in `critic_names` order (WGAN-GP);
    generator_z (batch, z_dim): the z of the generator update.
  """
  key, n_critic = _step_key(state), config.train.n_critic
  z_shape = (batch, config.model.z_dim)
  res = config.model.resolution
  image_shape = (batch, res, res, 3)
  critics = critic_names(models.build_models(config.model))
  critic_z, gp_eps = [], []
  for i in range(n_critic):
    k_z, k_gp = _critic_iteration_keys(key, i)
    critic_z.append(models.sample_latent(k_z, z_shape, config.model.arch))
    # As _critic_loss: critic j draws from fold_in(k_gp, j).
    gp_eps.append(jnp.stack([
        gan_losses.interpolation_weights(jax.random.fold_in(k_gp, j),
                                     image_shape).reshape(batch)
        for j in range(len(critics))]))
  generator_z = models.sample_latent(_generator_key(key, n_critic), z_shape,
                                     config.model.arch)
  return {'critic_z': jnp.stack(critic_z), 'gp_eps': jnp.stack(gp_eps),
          'generator_z': generator_z}


def train_step(state: TrainState, real, *, nets, config, batch_sharding=None,
               critic_loop='unroll'):
  """One generator iteration. real: (n_critic, B, H, W, 3) in [-1, 1].

  critic_loop: 'scan' (the critic update compiled once) or 'unroll' (a
  Python loop); the same arithmetic either way.
  """
  # At trace time: a batch of another resolution would otherwise fail deep
  # inside the critics with a message about a Dense kernel.
  res = config.model.resolution
  chex.assert_shape(real, (None, None, res, res, 3))
  opt = make_optimizer(config.train)
  key = _step_key(state)
  batch = real.shape[1]

  def sample_z(key):
    z = models.sample_latent(key, (batch, config.model.z_dim),
                             config.model.arch)
    if batch_sharding is not None:  # generate each device's share locally
      z = jax.lax.with_sharding_constraint(z, batch_sharding)
    return z

  def critic_iteration(carry, inputs):
    d_params, d_stats, d_opt_state = carry
    i, real_i = inputs
    k_z, k_gp = _critic_iteration_keys(key, i)
    fake, _ = _generate(nets, state, sample_z(k_z), True)
    fake = jax.lax.stop_gradient(fake)
    (_, (metrics, new_stats)), grads = jax.value_and_grad(
        _critic_loss, has_aux=True)(d_params, d_stats, nets, config, real_i,
                                    fake, k_gp)
    updates, d_opt_state = opt.update(grads, d_opt_state, d_params)
    d_params = optax.apply_updates(d_params, updates)
    metrics['d_grad_norm'] = optax.tree.norm(grads)
    return (d_params, new_stats or d_stats, d_opt_state), metrics

  n_critic = real.shape[0]
  carry = (state.d_params, state.d_stats, state.d_opt_state)
  if critic_loop == 'scan':
    carry, metrics = jax.lax.scan(critic_iteration, carry,
                                  (jnp.arange(n_critic), real))
    critic_metrics = jax.tree.map(lambda m: m[-1], metrics)
  else:
    for i in range(n_critic):
      carry, critic_metrics = critic_iteration(carry, (i, real[i]))
  d_params, d_stats, d_opt_state = carry
  state = state.replace(d_params=d_params, d_stats=d_stats,
                        d_opt_state=d_opt_state)

  z = sample_z(_generator_key(key, n_critic))
  (g_loss, g_stats), grads = jax.value_and_grad(
      _generator_loss, has_aux=True)(state.g_params, state, nets, config, z)
  updates, g_opt_state = opt.update(grads, state.g_opt_state, state.g_params)
  state = state.replace(
      step=state.step + 1, g_params=optax.apply_updates(state.g_params, updates),
      g_stats=g_stats, g_opt_state=g_opt_state)
  # The last critic iteration's metrics: they describe the critic the
  # generator was just trained against.
  metrics = dict(critic_metrics)
  metrics.update(g_loss=g_loss, g_grad_norm=optax.tree.norm(grads))
  return state, metrics


def resolve_critic_loop(train_config):
  """'auto' -> 'unroll' on CPU (XLA:CPU runs convolutions inside a while loop
  on a slow path, ~14x slower here), 'scan' elsewhere (one compiled critic
  update instead of n_critic: minutes less compilation on a GPU). The value
  is checked by config_schema.validate."""
  loop = train_config.critic_loop
  if loop == 'auto':
    return 'unroll' if jax.default_backend() == 'cpu' else 'scan'
  return loop


class TrainFunctions(NamedTuple):
  """The jitted functions of a run over a mesh, and their shardings.

  init() -> TrainState: the initial state (from config.seed) on the mesh.
  step(state, inputs) -> (state, metrics): one generator iteration. inputs
    is `real` (n_critic, B, H, W, 3) sharded over 'data' on B or, with
    on_device=True, the uint8 set (N, H, W, 3) replicated, from which the
    step draws its batches by `data.device_batches` at batch step * n_critic.
    The state's buffers are donated.
  state_sharding: of the state (replicated), a pytree like it.
  abstract_state: the state's shapes, dtypes and shardings (the target to
    restore a checkpoint into).
  input_sharding: of step's `inputs`.
  """
  init: Callable[[], 'TrainState']
  step: Callable[..., Any]
  state_sharding: Any
  abstract_state: Any
  input_sharding: NamedSharding


def build_train_functions(config, nets, mesh, on_device=False):
  """The jitted, sharded training functions over `mesh` (state replicated),
  for training and bench/train_step.py alike."""
  replicated = NamedSharding(mesh, P())
  real_sharding = NamedSharding(mesh, P(None, sharding.DATA_AXIS))
  init = functools.partial(init_state, config, nets)
  shapes = jax.eval_shape(init)
  state_sharding = jax.tree.map(lambda _: replicated, shapes)
  abstract_state = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      shapes, state_sharding)
  step = functools.partial(
      train_step, nets=nets, config=config,
      batch_sharding=NamedSharding(mesh, P(sharding.DATA_AXIS)),
      critic_loop=resolve_critic_loop(config.train))
  n_critic, batch = config.train.n_critic, config.train.batch_size

  def step_on_device(state, images):
    chex.assert_rank(images, 4)
    chex.assert_type(images, jnp.uint8)
    real = data.device_batches(images, config.seed, state.step * n_critic,
                               n_critic, batch)
    return step(state, jax.lax.with_sharding_constraint(real, real_sharding))

  input_sharding = replicated if on_device else real_sharding
  step_fn = jax.jit(step_on_device if on_device else step,
                    in_shardings=(state_sharding, input_sharding),
                    out_shardings=(state_sharding, replicated),
                    donate_argnums=0)
  return TrainFunctions(
      init=jax.jit(init, out_shardings=state_sharding), step=step_fn,
      state_sharding=state_sharding, abstract_state=abstract_state,
      input_sharding=input_sharding)


def sample_images(generator, g_params, g_stats, z):
  """G(z) in inference mode (running statistics), as completion runs it."""
  return generator.apply({'params': g_params, 'batch_stats': g_stats}, z,
                         train=False)


# ----------------------------------------------------------------------------
# The loop.


_IMPORT_TIME = time.time()


def process_start_time():
  """When this process started (Linux: /proc), else when this module was
  imported: the origin of `config.train.time_limit`."""
  try:
    with open('/proc/self/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    with open('/proc/uptime') as f:
      uptime = float(f.read().split()[0])
    return time.time() - uptime + int(fields[19]) / os.sysconf('SC_CLK_TCK')
  except (OSError, ValueError, IndexError):
    return _IMPORT_TIME


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
  fresh = init_state(config, nets)
  d_params = {k: variables[k]['params'] for k in fresh.d_params}
  d_stats = {k: variables[k]['batch_stats'] for k in fresh.d_stats}
  g_params = variables['generator']['params']
  # Training continues from the source's saved inference statistics (the
  # recalibrated ones; a checkpoint not finalized saved its running
  # averages there); the EMA takes over from there.
  cast = lambda new, like: jax.tree.map(
      lambda a, b: jnp.asarray(a, b.dtype), new, like)
  g_stats = cast(variables['generator']['batch_stats'], fresh.g_stats)
  opt = make_optimizer(config.train)
  g_params, d_params = (cast(g_params, fresh.g_params),
                        cast(d_params, fresh.d_params))
  return fresh.replace(
      step=jnp.asarray(step, jnp.int32), g_params=g_params, g_stats=g_stats,
      # A copy: g_stats is donated with the state, g_stats_eval beside it.
      g_stats_eval=jax.tree.map(jnp.copy, g_stats),
      d_params=d_params, d_stats=cast(d_stats, fresh.d_stats),
      g_opt_state=opt.init(g_params), d_opt_state=opt.init(d_params))


# Bytes free on a device (a module attribute: tests replace it).
free_memory = host_memory.free_memory


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
  free = free_memory(device)
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


def _first_non_finite(pulled):
  """(step, name) of the first NaN/Inf among pulled metrics, or None."""
  for step, metrics in pulled:
    for name, value in metrics.items():
      if not np.isfinite(value):
        return step, name
  return None


def train_and_evaluate(config, workdir, clock=None):
  """Trains (or resumes) in `workdir`; returns the final TrainState.

  Writes workdir/metrics.jsonl, workdir/samples/step_XXXXXX.png, orbax
  checkpoints under workdir/checkpoints and workdir/config.json.

  `clock`: the time source of `config.train.time_limit` (seconds, any
  origin); by default the wall clock from the process's start. A test gives
  a fake one, so where the limit stops a run does not depend on the
  machine's speed; the limit then counts from the call.
  """
  # Bad input fails here, before anything is written.
  config_schema.validate(config)
  if clock is None:
    clock, origin = time.time, process_start_time()
  else:
    origin = clock()
  deadline = (origin + config.train.time_limit
              if config.train.time_limit > 0 else None)
  # Opened once: the batches read this source (an npz source holds every
  # image in memory).
  source = data.open_source(config.data)
  check_data_size(config, len(source))
  sharding.check_batch_size(config.train.batch_size)
  workdir_files.check_workdir(workdir)
  workdir_files.check_resumable(workdir, config)
  _check_export_to(config.train.export_to, workdir)

  nets = models.build_models(config.model)
  on_device = config.data.on_device
  functions = build_train_functions(config, nets, sharding.training_mesh(),
                                    on_device)
  files = workdir_files.RunFiles(workdir, config)
  if files.last_saved is not None:
    state = _restore_for_resume(workdir, files, functions.abstract_state)
  elif config.train.init_from:
    state = jax.device_put(
        warm_start_state(config, nets, config.train.init_from),
        functions.state_sharding)
  else:
    state = functions.init()
  start = int(jax.device_get(state.step))

  step_fn = functions.step
  n_critic, res = config.train.n_critic, config.model.resolution
  global_shape = (n_critic, config.train.batch_size, res, res, 3)
  if on_device:
    images = _device_images(config, source, functions.input_sharding)
    next_input = lambda: images
    batch_iter = None
  else:
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

  sample_z = models.sample_latent(
      jax.random.fold_in(jax.random.key(config.seed), 2**30),
      (64, config.model.z_dim), config.model.arch)
  sample_fn = jax.jit(functools.partial(sample_images, nets['generator']))

  logging.info('training on %s with %d devices from step %d',
               source.describe(), jax.device_count(), start)
  total = config.train.steps
  bar = tqdm.tqdm(total=total, initial=start, disable=not files.is_chief,
                  desc='train', unit='it', dynamic_ncols=True)
  pending = []  # (step, on-device metrics) not yet pulled to the host
  # (time, step) of the first flush: the speed that predicts where the
  # time limit will stop is measured from there (compilation excluded).
  first_flush = []

  def report_expected_steps(now, step):
    if not first_flush:
      first_flush.append((now, step))
      return
    if len(first_flush) > 1:
      return
    (t0, s0) = first_flush[0]
    rate = (step - s0) / max(now - t0, 1e-9)
    expected = min(total, int(step + rate * max(deadline - now, 0)))
    first_flush.append((now, step))
    files.log([{'step': step, 'it_per_s': rate,
                'expected_final_step': expected}])
    if files.is_chief:
      bar.write(f'time limit: {rate:.2f} it/s, expect to stop near step '
                f'{expected} in {deadline - now:.0f} s')

  def flush():
    """Pulls pending metrics; stops on NaN/Inf before anything is saved."""
    pulled = [(s, {k: float(v) for k, v in m.items()})
              for s, m in jax.device_get(pending)]
    pending.clear()
    bad = _first_non_finite(pulled)
    if bad:
      kept = (f'the last good checkpoint (step {files.last_saved}) is kept '
              f'in {workdir}' if files.last_saved is not None
              else 'no checkpoint had been saved')
      raise errors.NonFiniteLossError(
          f'{bad[1]} is NaN/Inf at step {bad[0]}; training stopped; {kept}')
    if pulled:
      now = clock()
      files.log([{'step': s, 'time': now, **m} for s, m in pulled])
      last = pulled[-1][1]
      bar.set_postfix(d=f"{last['critic_loss']:.3f}",
                      g=f"{last['g_loss']:.3f}",
                      w=f"{last.get('wasserstein', 0.0):.3f}")
      if deadline is not None:
        report_expected_steps(now, pulled[-1][0])

  # Forced CPU devices can deadlock in collectives when steps queue up
  # behind each other on a small machine; real accelerators need no sync.
  sync_each_step = jax.devices()[0].platform == 'cpu' and len(jax.devices()) > 1
  step = start
  out_of_time = lambda: deadline is not None and clock() >= deadline
  try:
    with workdir_files.StopRequest() as stop:
      timed_out = out_of_time()
      while step < total and stop.signum is None and not timed_out:
        state, metrics = step_fn(state, next_input())
        if sync_each_step:
          jax.block_until_ready(state)
        step += 1
        pending.append((step, metrics))
        bar.update(1)
        if step % config.train.log_every == 0:
          flush()
        if step % config.train.sample_every == 0:
          files.sample_grid(step, jax.device_get(
              sample_fn(state.g_params, state.g_stats, sample_z)))
        # Read before the periodic checkpoint: a run that stops at this
        # step saves it once, finalized, below (not the running averages).
        timed_out = out_of_time()
        if (step % config.train.checkpoint_every == 0 and step < total
            and not timed_out and stop.signum is None):
          flush()
          files.save(_unfinished(state), step, finalized=False)
      flush()
      if stop.signum is not None:
        files.save(_unfinished(state), step, finalized=False)
        raise errors.StoppedBySignal(
            f'stopped by {signal.Signals(stop.signum).name} at step {step}; '
            f'checkpoint saved in {workdir}; rerun the same command to '
            'resume', stop.signum)
    if step < total:
      if step == start:
        raise errors.TimeLimitTooShort(
            f'config.train.time_limit={config.train.time_limit:g}: shorter '
            f'than the start-up ({clock() - origin:.0f} s from the start to '
            'load the data and compile): no step was trained and nothing was '
            'saved; raise the limit')
      bar.write(f'time limit of {config.train.time_limit:g} s reached at step '
                f'{step}')
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
    if batch_iter is not None and batch_iter.num_skipped:
      files.log([{'step': step, 'skipped_unreadable_images':
                  batch_iter.num_skipped}])
      logging.warning('skipped %d unreadable images (see the log above)',
                      batch_iter.num_skipped)
  finally:
    bar.close()
    files.close()
    if batch_iter is not None:
      batch_iter.close()
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
  train_mode, _ = _generate(nets, state, z, True)

  def gap(stats):
    inference = sample_images(generator, state.g_params, stats, z)
    return float(jnp.abs(inference - train_mode).mean())

  record = {'step': int(state.step), 'bn_eval_gap_ema': gap(state.g_stats),
            'bn_eval_gap_recalibrated': gap(g_stats_eval)}
  logging.info('BatchNorm recalibration: %s', record)
  return state.replace(g_stats_eval=g_stats_eval), record
