"""WGAN-GP training (paper 3.1, 4): state, the jitted step, the loop.

One `train_step` is one generator iteration: `n_critic` critic updates (a
`lax.scan` over `n_critic` real batches) followed by one generator update.
It is a pure function of (state, real batches); the loop jits it over a
device mesh with the batch sharded on 'data' and the state replicated.
"""
import functools
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import tqdm

from jaxinpaint import checkpoint, data, grids, losses, models


@struct.dataclass
class TrainState:
  step: jax.Array
  rng: jax.Array  # raw uint32 key data; step keys are fold_in(rng, step)
  g_params: Any
  g_stats: Any  # G's BatchNorm running statistics (EMA during training)
  g_stats_eval: Any  # the statistics completion uses (recalibrated at the end)
  d_params: Any  # {'critic': ..., 'patch_critic': ...}
  d_stats: Any  # DCGAN discriminator BatchNorm statistics ({} for the WGAN)
  g_opt_state: Any
  d_opt_state: Any


class NonFiniteLossError(RuntimeError):
  pass


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
      loss, m = losses.wgan_gp_critic_loss(
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
      loss = losses.gan_discriminator_loss(real_logits, fake_logits)
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
    loss = losses.gan_generator_loss(logits)
  return loss, g_stats


def train_step(state: TrainState, real, *, nets, config, batch_sharding=None):
  """One generator iteration. real: (n_critic, B, H, W, 3) in [-1, 1]."""
  opt = make_optimizer(config.train)
  key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  batch = real.shape[1]

  def sample_z(key):
    z = models.sample_latent(key, (batch, config.model.z_dim),
                             config.model.arch)
    if batch_sharding is not None:  # generate each device's share locally
      z = jax.lax.with_sharding_constraint(z, batch_sharding)
    return z

  # A Python loop, not lax.scan: XLA:CPU runs convolutions inside a while
  # loop on a slow path (~14x slower here); n_critic is small, so unrolling
  # costs little compile time and nothing on GPUs.
  n_critic = real.shape[0]
  d_params, d_stats, d_opt_state = (state.d_params, state.d_stats,
                                    state.d_opt_state)
  for i in range(n_critic):
    k_z, k_gp = jax.random.split(jax.random.fold_in(key, i))
    fake, _ = _generate(nets, state, sample_z(k_z), True)
    fake = jax.lax.stop_gradient(fake)
    (_, (critic_metrics, new_stats)), grads = jax.value_and_grad(
        _critic_loss, has_aux=True)(d_params, d_stats, nets, config, real[i],
                                    fake, k_gp)
    updates, d_opt_state = opt.update(grads, d_opt_state, d_params)
    d_params = optax.apply_updates(d_params, updates)
    d_stats = new_stats or d_stats
  critic_metrics['d_grad_norm'] = optax.tree.norm(grads)
  state = state.replace(d_params=d_params, d_stats=d_stats,
                        d_opt_state=d_opt_state)

  z = sample_z(jax.random.fold_in(key, n_critic))
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


def recalibrate_batch_stats(generator, g_params, g_stats, key, num_batches,
                            batch_size, z_dim, arch):
  """G's BatchNorm statistics averaged over `num_batches` batches of z.

  The running averages lag behind a GAN generator whose weights keep moving;
  completion runs G in inference mode, so it needs statistics that match the
  final weights. With momentum 0 a training-mode pass stores exactly the
  batch's statistics; their mean over many batches is the estimate.
  """
  g = generator.clone(bn_momentum=0.0)

  def one(key):
    z = models.sample_latent(key, (batch_size, z_dim), arch)
    _, updates = g.apply({'params': g_params, 'batch_stats': g_stats}, z,
                         train=True, mutable=['batch_stats'])
    return updates['batch_stats']

  stats = jax.lax.map(one, jax.random.split(key, num_batches))
  return jax.tree.map(lambda s: s.mean(axis=0), stats)


def sample_images(generator, g_params, g_stats, z):
  """G(z) in inference mode (running statistics), as completion runs it."""
  return generator.apply({'params': g_params, 'batch_stats': g_stats}, z,
                         train=False)


# ----------------------------------------------------------------------------
# The loop.


def make_mesh():
  return Mesh(np.array(jax.devices()), ('data',))


def check_batch_size(batch_size):
  n = jax.device_count()
  if batch_size % n:
    raise ValueError(
        f'--config.train.batch_size={batch_size} is not divisible by the '
        f'{n} devices; use a multiple of {n}')


def check_workdir(workdir):
  """Fails early, with one line and nothing created, if `workdir` can't be
  written; the directory itself is made at the first write."""
  path = Path(workdir).absolute()
  if path.exists() and not path.is_dir():
    raise ValueError(f'--workdir {workdir}: exists and is not a directory')
  existing = next(p for p in (path, *path.parents) if p.exists())
  if not existing.is_dir():
    raise ValueError(f'--workdir {workdir}: {existing} is not a directory')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ValueError(f'--workdir {workdir}: {existing} is not writable')


def _check_resumable(workdir, config):
  """A work dir may resume only a run of the same networks."""
  path = Path(workdir, checkpoint.CONFIG_FILE)
  if checkpoint.latest_step(workdir) is None or not path.is_file():
    return
  saved = json.loads(path.read_text()).get('model')
  wanted = json.loads(config.to_json())['model']
  if saved != wanted:
    raise ValueError(
        f'--workdir {workdir} holds a run of other networks (config.model '
        f'{saved}, asked {wanted}); use a new --workdir')


class StoppedBySignal(Exception):
  """SIGTERM/SIGINT arrived; a checkpoint was saved."""


class _StopRequest:
  """SIGTERM/SIGINT set a flag; the loop then saves a checkpoint and stops."""

  def __init__(self):
    self.signum = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.signum = signum

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class _RunFiles:
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
      checkpoint.save_config(self.workdir, self.config)
    self.manager().save(step, args=ocp.args.StandardSave(state), force=True)
    self.last_saved = step

  def log(self, records):
    if not self.is_chief:
      return
    if self._metrics is None:
      self.workdir.mkdir(parents=True, exist_ok=True)
      self._metrics = open(self.workdir / 'metrics.jsonl', 'a')
    for r in records:
      self._metrics.write(json.dumps(r) + '\n')
    self._metrics.flush()

  def sample_grid(self, step, images):
    if self.is_chief:
      grids.save_grid(self.workdir / 'samples' / f'step_{step:06d}.png',
                      images)

  def close(self):
    if self._manager is not None:
      self._manager.wait_until_finished()
    if self._metrics is not None:
      self._metrics.close()


def _first_non_finite(pulled):
  """(step, name) of the first NaN/Inf among pulled metrics, or None."""
  for step, metrics in pulled:
    for name, value in metrics.items():
      if not np.isfinite(value):
        return step, name
  return None


def train_and_evaluate(config, workdir):
  """Trains (or resumes) in `workdir`; returns the final TrainState.

  Writes workdir/metrics.jsonl, workdir/samples/step_XXXXXX.png, orbax
  checkpoints under workdir/checkpoints and workdir/config.json.
  """
  # Bad input fails here, before anything is written.
  source = data.describe_source(config.data)
  check_batch_size(config.train.batch_size)
  check_workdir(workdir)
  _check_resumable(workdir, config)

  nets = models.build_models(config.model)
  mesh = make_mesh()
  replicated = NamedSharding(mesh, P())
  real_sharding = NamedSharding(mesh, P(None, 'data'))

  init = functools.partial(init_state, config, nets)
  abstract = jax.eval_shape(init)
  state_sharding = jax.tree.map(lambda _: replicated, abstract)
  files = _RunFiles(workdir, config)
  if files.last_saved is None:
    state = jax.jit(init, out_shardings=state_sharding)()
  else:
    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract, state_sharding)
    state = files.manager().restore(
        files.last_saved, args=ocp.args.StandardRestore(target))
  start = int(jax.device_get(state.step))

  step_fn = jax.jit(
      functools.partial(train_step, nets=nets, config=config,
                        batch_sharding=NamedSharding(mesh, P('data'))),
      in_shardings=(state_sharding, real_sharding),
      out_shardings=(state_sharding, replicated), donate_argnums=0)

  n_critic, res = config.train.n_critic, config.model.resolution
  global_shape = (n_critic, config.train.batch_size, res, res, 3)
  # Each generator step consumes n_critic real batches: resuming at step s
  # continues at batch s·n_critic of the same deterministic sequence.
  batch_iter = data.make_batch_iterator(
      config.data, res, config.train.batch_size, seed=config.seed,
      start_batch=start * n_critic, process_index=jax.process_index(),
      process_count=jax.process_count())

  sample_z = models.sample_latent(
      jax.random.fold_in(jax.random.key(config.seed), 2**30),
      (64, config.model.z_dim), config.model.arch)
  sample_fn = jax.jit(functools.partial(sample_images, nets['generator']))

  logging.info('training on %s with %d devices from step %d', source,
               jax.device_count(), start)
  total = config.train.steps
  bar = tqdm.tqdm(total=total, initial=start, disable=not files.is_chief,
                  desc='train', unit='it', dynamic_ncols=True)
  pending = []  # (step, on-device metrics) not yet pulled to the host

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
      raise NonFiniteLossError(
          f'{bad[1]} is NaN/Inf at step {bad[0]}; training stopped; {kept}')
    if pulled:
      now = time.time()
      files.log([{'step': s, 'time': now, **m} for s, m in pulled])
      last = pulled[-1][1]
      bar.set_postfix(d=f"{last['critic_loss']:.3f}",
                      g=f"{last['g_loss']:.3f}",
                      w=f"{last.get('wasserstein', 0.0):.3f}")

  # Forced CPU devices can deadlock in collectives when steps queue up
  # behind each other on a small machine; real accelerators need no sync.
  sync_each_step = jax.devices()[0].platform == 'cpu' and len(jax.devices()) > 1
  step = start
  try:
    with _StopRequest() as stop:
      while step < total and stop.signum is None:
        local = np.stack([next(batch_iter) for _ in range(n_critic)])
        real = jax.make_array_from_process_local_data(
            real_sharding, local, global_shape)
        state, metrics = step_fn(state, real)
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
        if step % config.train.checkpoint_every == 0 and step < total:
          flush()
          files.save(state.replace(g_stats_eval=state.g_stats), step)
      flush()
      if stop.signum is not None:
        files.save(state.replace(g_stats_eval=state.g_stats), step)
        raise StoppedBySignal(
            f'stopped by {signal.Signals(stop.signum).name} at step {step}; '
            f'checkpoint saved in {workdir}; rerun the same command to '
            'resume')
    if step != files.last_saved:
      state, record = finalize(state, nets, config)
      files.log([record])
      files.save(state, step)
    if batch_iter.num_skipped:
      files.log([{'step': step, 'skipped_unreadable_images':
                  batch_iter.num_skipped}])
      logging.warning('skipped %d unreadable images (see the log above)',
                      batch_iter.num_skipped)
  finally:
    bar.close()
    files.close()
    batch_iter.close()
  return state


def _recalibration_key(config):
  return jax.random.fold_in(jax.random.key(config.seed), 2**30 + 1)


def recalibrated_stats(generator, g_params, g_stats, config,
                       num_batches=None):
  """G's BatchNorm statistics for inference from `num_batches` (default: the
  config's `bn_recalibration_batches`) batches of z drawn from the run's
  fixed key: `finalize` and `export` compute the same ones."""
  batches = num_batches or config.train.bn_recalibration_batches
  recalibrate = jax.jit(functools.partial(
      recalibrate_batch_stats, generator, num_batches=max(1, batches),
      batch_size=config.train.batch_size, z_dim=config.model.z_dim,
      arch=config.model.arch))
  return recalibrate(g_params, g_stats, _recalibration_key(config))


def finalize(state, nets, config):
  """Recalibrates G's statistics for inference; reports how much that moved.

  `bn_eval_gap_*` is the mean |G_inference(z) − G_training(z)| on a fixed z
  with the EMA and with the recalibrated statistics: a large EMA gap means
  the running statistics had gone stale.
  """
  generator = nets['generator']
  g_stats_eval = recalibrated_stats(generator, state.g_params, state.g_stats,
                                    config)
  key, batch = _recalibration_key(config), config.train.batch_size
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
