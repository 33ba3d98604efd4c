"""The model handle completion takes (`Model`: the networks, their
variables, the latent they were trained with), the latent prior, parameter
counts, untrained variables for tests, and G's BatchNorm recalibration for
inference (the end of training, export and loading an unfinished work dir).
"""
import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from jaxinpaint.models import networks


# The latent distribution each architecture is trained with: N(0, 1) for
# the WGAN (paper), U(-1, 1) for the DCGAN (Yeh et al.).
LATENT_DISTRIBUTIONS = {'wgan': 'normal', 'dcgan': 'uniform'}


def sample_latent(key, shape, arch: str):
  """Training prior: N(0, 1) for the WGAN (paper), U(-1, 1) for the DCGAN."""
  if LATENT_DISTRIBUTIONS[arch] == 'uniform':
    return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
  return jax.random.normal(key, shape)


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
  """One trained model as completion needs it: what its nets are, their
  variables, and what it was trained with.

  Everything that depends on the model — the latent's size and distribution,
  the form of a critic prior, which critics exist — is read from here, so a
  DCGAN cannot be searched with the WGAN's latent or prior by mistake. Build
  it with `Model.from_config` (or load it: `loading.load_model`).

  nets: {'generator', 'critic'?, 'patch_critic'?} Flax modules, exactly the
    networks that `variables` holds (a generator alone has no critic), in
    the inference form (`networks.build_models(..., fused_resampling=True)`).
  variables: {name: {'params', ...}} float32 (`checkpoint` module docs).
  arch: 'wgan' or 'dcgan'; z_dim, resolution: from the model config.
  step: the training step the variables are from (0 when unknown).
  config: the whole config the model was trained with, if known.
  """
  nets: FrozenDict
  variables: Any
  arch: str
  z_dim: int
  resolution: int
  step: int = 0
  config: Any = None

  @classmethod
  def from_config(cls, model_config, variables, *, step: int = 0,
                  config=None) -> 'Model':
    """The handle of `variables` trained with `model_config` (config.model).

    Raises ValueError (one line) when the variables do not fit the config's
    networks: no generator, or a generator whose input is not z_dim wide.
    """
    all_nets = networks.build_models(model_config, fused_resampling=True)
    if 'generator' not in variables:
      raise ValueError('model variables have no generator; expected the '
                       f'networks {sorted(all_nets)}')
    unknown = set(variables) - set(all_nets)
    if unknown:
      raise ValueError(f'model variables hold {sorted(unknown)}, which a '
                       f'{model_config.arch!r} model does not have')
    nets = FrozenDict({k: v for k, v in all_nets.items() if k in variables})
    z_dim = int(model_config.z_dim)
    try:  # shapes only: nothing runs or compiles
      jax.eval_shape(nets['generator'].apply, variables['generator'],
                     jax.ShapeDtypeStruct((1, z_dim), jnp.float32))
    except Exception as e:  # pylint: disable=broad-except
      first = (str(e).strip().splitlines() or [''])[0]
      raise ValueError(f'config.model (z_dim={z_dim}, width='
                       f'{model_config.width}, resolution='
                       f'{model_config.resolution}) does not fit the '
                       f'generator variables: {first}') from e
    return cls(nets=nets, variables=variables, arch=model_config.arch,
               z_dim=z_dim, resolution=int(model_config.resolution),
               step=int(step), config=config)

  @property
  def latent_distribution(self) -> str:
    """'normal' (N(0, 1)) or 'uniform' (U(-1, 1)): G's training latents."""
    return LATENT_DISTRIBUTIONS[self.arch]

  def sample_latent(self, key, shape=()):
    """Latents of shape (*shape, z_dim) from the training distribution."""
    return sample_latent(key, tuple(shape) + (self.z_dim,), self.arch)

  def with_variables(self, variables) -> 'Model':
    """The same model with other (e.g. device-placed) variables."""
    return dataclasses.replace(self, variables=variables)


def generator_late_layers(generator_params) -> tuple:
  """The top-level names of G's later layers: its last two up-sampling
  stages and what follows them (pivotal tuning's `Tuning(layers='late')`).

  WGAN G: UpBlock_{n-2}, UpBlock_{n-1}, the output BatchNorm_0 and Conv_0.
  DCGAN G: ConvTranspose_{n-2} (a stage) and ConvTranspose_{n-1} (the
  output), with BatchNorm_{n-1}, which follows ConvTranspose_{n-2}.
  Names, not dict order: a restored checkpoint may sort its keys.
  """
  names = list(generator_params)
  index = lambda name: int(name.rsplit('_', 1)[1])
  blocks = sorted((n for n in names if n.startswith('UpBlock_')), key=index)
  if blocks:  # the WGAN's residual G
    return tuple(blocks[-2:]) + tuple(
        n for n in names if n.startswith(('BatchNorm_', 'Conv_')))
  convs = sorted((n for n in names if n.startswith('ConvTranspose_')),
                 key=index)
  if len(convs) < 2:
    raise ValueError(f'generator layers {sorted(names)}: expected UpBlock_k '
                     'or ConvTranspose_k stages')
  first = index(convs[-2])
  return tuple(convs[-2:]) + tuple(
      n for n in names if n.startswith('BatchNorm_') and index(n) > first)


def count_params(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))


def summary(model_config) -> str:
  """Parameter counts of the networks a model config builds."""
  nets = networks.build_models(model_config)
  res = model_config.resolution
  lines = [f'{model_config.arch} {res}x{res}, width {model_config.width}, '
           f'z {model_config.z_dim}:']
  for name, net in nets.items():
    x = (jnp.zeros((1, model_config.z_dim)) if name == 'generator'
         else jnp.zeros((1, res, res, 3)))
    shapes = jax.eval_shape(net.init, jax.random.key(0), x)
    out = jax.eval_shape(lambda v: net.apply(v, x), shapes)
    lines.append(f'  {name:13s} {count_params(shapes["params"]):>12,d} '
                 f'parameters  output {tuple(out.shape[1:])}')
  return '\n'.join(lines)


def random_variables(model_config, seed: int = 0):
  """{name: variables} of untrained networks, for tests and benchmarks.

  Filled in numpy without running (or compiling) Flax's init, which is slow
  on a CPU: shapes from `jax.eval_shape`, kernels ~ N(0, 1/fan_in), scales
  and running variances 1, biases and running means 0.
  """
  nets = networks.build_models(model_config)
  rng = np.random.default_rng(seed)
  res = model_config.resolution
  inputs = {name: jax.ShapeDtypeStruct((1, res, res, 3), np.float32)
            for name in nets}
  inputs['generator'] = jax.ShapeDtypeStruct((1, model_config.z_dim),
                                             np.float32)

  def fill(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      fan_in = int(np.prod(leaf.shape[:-1]))
      return rng.normal(0, fan_in**-0.5, leaf.shape).astype(np.float32)
    value = 1.0 if name in ('scale', 'var') else 0.0
    return np.full(leaf.shape, value, np.float32)

  return {name: jax.tree_util.tree_map_with_path(
      fill, jax.eval_shape(net.init, jax.random.key(0), inputs[name]))
          for name, net in nets.items()}


# ----------------------------------------------------------------------------
# BatchNorm recalibration: G's statistics for inference.


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
    z = sample_latent(key, (batch_size, z_dim), arch)
    _, updates = g.apply({'params': g_params, 'batch_stats': g_stats}, z,
                         train=True, mutable=['batch_stats'])
    return updates['batch_stats']

  stats = jax.lax.map(one, jax.random.split(key, num_batches))
  return jax.tree.map(lambda s: s.mean(axis=0), stats)


def recalibration_key(config):
  """The fixed key of a run's recalibration batches (from config.seed)."""
  return jax.random.fold_in(jax.random.key(config.seed), 2**30 + 1)


def recalibrated_stats(generator, g_params, g_stats, config,
                       num_batches=None):
  """G's BatchNorm statistics for inference from `num_batches` (default: the
  config's `train.bn_recalibration_batches`) batches of
  `train.batch_size` z drawn from the run's fixed key: the end of training
  (training's `finalize`), `export.export` and `loading.load_model` of an
  unfinished work dir compute the same ones."""
  batches = num_batches or config.train.bn_recalibration_batches
  recalibrate = jax.jit(functools.partial(
      recalibrate_batch_stats, generator, num_batches=max(1, batches),
      batch_size=config.train.batch_size, z_dim=config.model.z_dim,
      arch=config.model.arch))
  return recalibrate(g_params, g_stats, recalibration_key(config))
