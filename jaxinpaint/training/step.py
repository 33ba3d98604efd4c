"""The WGAN-GP training step (paper 3.1, 4): its state, losses and jit.

One `train_step` is one generator iteration: `n_critic` critic updates (a
`lax.scan` over `n_critic` real batches, or a Python loop) followed by one
generator update. It is a pure function of (state, real batches): its
randomness is `fold_in(state.rng, state.step)` (`step_randomness` draws the
same numbers for another implementation). `build_train_functions` jits it
over a device mesh with the batch sharded on `sharding.DATA_AXIS` and the
state replicated, for the loop (`loop.py`) and the benchmarks alike.
Nothing here reads or writes files.
"""
import functools
from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxinpaint import data, models, sharding
from jaxinpaint.training import gan_losses


@struct.dataclass
class TrainState:
  """Everything a run carries from step to step (what a checkpoint holds)."""
  step: jax.Array
  rng: jax.Array  # raw uint32 key data; step keys are fold_in(rng, step)
  g_params: Any
  g_stats: Any  # G's BatchNorm running statistics (EMA during training)
  # The statistics completion uses: recalibrated by `loop.finalize` at the end,
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


def generate(nets, state, z, train: bool):
  """G(z) with the state's generator: (images, updated running statistics);
  the step and `loop.finalize` run it in training mode (train=True)."""
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
  fake, g_stats = generate(nets, state.replace(g_params=g_params), z, True)
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
    fake, _ = generate(nets, state, sample_z(k_z), True)
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
      step=state.step + 1,
      g_params=optax.apply_updates(state.g_params, updates),
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
