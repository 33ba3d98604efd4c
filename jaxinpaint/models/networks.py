"""The networks: residual generator G, layer-norm critic D, PatchGAN critic Dp
(paper, section 3.1) and the DCGAN pair of the Yeh et al. baseline.

All modules take NHWC images in [-1, 1]. Parameters are float32; `dtype` sets
the activations (bfloat16 on GPUs). Critic scores are returned in float32.
"""
import dataclasses
import functools
import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

Dtype = Any


def _num_doublings(resolution: int, base: int) -> int:
  n = math.log2(resolution / base)
  if resolution < 2 * base or n != int(n):
    raise ValueError(
        f'config.model.resolution={resolution}: expected a power of two '
        f'>= {2 * base} (32, 64, 128, ...)')
  return int(n)


def generator_widths(resolution: int, width: int) -> list[int]:
  """Output channels of G's up-sampling blocks: ..., 8d, 8d, 4d, 2d, d.

  64x64 has four blocks (8d 4d 2d d after the 8d projection), as in the
  WGAN-GP ResNet; each doubling of the resolution adds one 8d block in front.
  """
  n = _num_doublings(resolution, 4)
  mults = ([8] * max(n - 3, 0) + [4, 2, 1])[-n:]
  return [m * width for m in mults]


def critic_widths(resolution: int, width: int) -> list[int]:
  """Output channels of D's down-sampling blocks: 2d, 4d, 8d, 8d, ... ."""
  n = _num_doublings(resolution, 4)
  mults = [2, 4, 8] + [8] * max(n - 3, 0)
  return [m * width for m in mults[:n]]


def upsample(x):
  """Nearest-neighbour 2x up-sampling (as the WGAN-GP ResNet's G)."""
  return jnp.repeat(jnp.repeat(x, 2, axis=-3), 2, axis=-2)


def downsample(x):
  """2x2 mean pooling."""
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


def batch_norm(train: bool, momentum: float, dtype) -> nn.BatchNorm:
  """BatchNorm with batch statistics when training, running ones otherwise."""
  return nn.BatchNorm(use_running_average=not train, momentum=momentum,
                      dtype=dtype)


def box_filtered_kernel(kernel):
  """The 4x4 kernel of a 3x3 kernel combined with a 2x2 box filter.

  Along each axis, tap s of the result sums the 3x3 taps s − 1 and s (zero
  outside): (k0, k0 + k1, k1 + k2, k2). A 3x3 'SAME' conv followed by 2x2
  mean pooling is the 4x4 stride-2 conv of this kernel / 4 (`ConvMeanPool`);
  a 3x3 'SAME' conv of the 2x nearest up-sampled input is its stride-2
  transposed conv (`UpsampleConv`).
  """
  k = jnp.pad(kernel, ((1, 1), (1, 1), (0, 0), (0, 0)))
  return k[1:, 1:] + k[1:, :-1] + k[:-1, 1:] + k[:-1, :-1]


class _ResampledConv3x3(nn.Module):
  """A 3x3 'SAME' conv fused with a 2x re-sampling into one 4x4 conv of
  `box_filtered_kernel` (times `kernel_scale`, with `conv_args`).

  Its parameters are those of the `nn.Conv(features, (3, 3))` it replaces
  (names, shapes, initializers, float32), so checkpoints are the same and
  the result differs by float rounding only; it costs 16 multiply-adds per
  low-resolution pixel and channel pair instead of the 36 of a 3x3 conv at
  the high resolution, forward and for the input's gradient (its kernel
  gradient is slower on XLA:CPU: `build_models`).
  """
  features: int
  dtype: Dtype = jnp.float32
  kernel_scale: ClassVar[float]
  conv_args: ClassVar[dict]

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,),
                      jnp.float32)
    # The 4x4 kernel is formed in float32, then cast like nn.Conv's.
    kernel = self.kernel_scale * box_filtered_kernel(kernel)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias,
                                              dtype=self.dtype)
    batch_shape = x.shape[:-3]
    y = jax.lax.conv_general_dilated(
        x.reshape((-1,) + x.shape[-3:]), kernel,
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'), **self.conv_args)
    return y.reshape(batch_shape + y.shape[1:]) + bias


class UpsampleConv(_ResampledConv3x3):
  """conv3x3 ('SAME') of the 2x nearest up-sampled input, as one stride-2
  transposed conv: output row 2i reads input rows i − 1, i with (k0,
  k1 + k2), row 2i + 1 rows i, i + 1 with (k0 + k1, k2)."""
  kernel_scale = 1.0
  conv_args = dict(window_strides=(1, 1), padding=((2, 2), (2, 2)),
                   lhs_dilation=(2, 2))


class ConvMeanPool(_ResampledConv3x3):
  """conv3x3 ('SAME') then 2x2 mean pooling, as one 4x4 stride-2 conv:
  pooled output j reads inputs 2j − 1 ... 2j + 2 along each axis."""
  kernel_scale = 0.25
  conv_args = dict(window_strides=(2, 2), padding=((1, 1), (1, 1)))


class UpBlock(nn.Module):
  """BN → ReLU → up → conv3x3 → BN → ReLU → conv3x3, plus up → conv1x1.

  The 1x1 shortcut runs before the up-sampling (a per-pixel map commutes
  with nearest up-sampling: the same products, a quarter of them). With
  `fused_resampling` the up-sampling and the next conv are one
  `UpsampleConv`: the same parameters, the same result up to float rounding.
  """
  features: int
  dtype: Dtype = jnp.float32
  bn_momentum: float = 0.9
  fused_resampling: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    norm = lambda: batch_norm(train, self.bn_momentum, self.dtype)
    conv = functools.partial(nn.Conv, dtype=self.dtype)
    # Explicit names, the same in either form (saved models use them).
    shortcut = upsample(conv(self.features, (1, 1), name='Conv_0')(x))
    h = nn.relu(norm()(x))
    if self.fused_resampling:
      h = UpsampleConv(self.features, self.dtype, name='Conv_1')(h)
    else:
      h = conv(self.features, (3, 3), name='Conv_1')(upsample(h))
    h = nn.relu(norm()(h))
    h = conv(self.features, (3, 3), name='Conv_2')(h)
    return shortcut + h


class DownBlock(nn.Module):
  """LN → ReLU → conv3x3 → LN → ReLU → conv3x3 → pool, plus pool → conv1x1.

  LayerNorm normalizes each example over (H, W, C): no statistics are shared
  across the batch, which the per-example gradient penalty needs. With
  `fused_resampling` the last conv and the pooling are one `ConvMeanPool`.
  """
  features: int
  dtype: Dtype = jnp.float32
  fused_resampling: bool = False

  @nn.compact
  def __call__(self, x):
    norm = functools.partial(
        nn.LayerNorm, reduction_axes=(-3, -2, -1), dtype=self.dtype)
    conv = functools.partial(nn.Conv, dtype=self.dtype)
    shortcut = conv(self.features, (1, 1))(downsample(x))
    h = conv(x.shape[-1], (3, 3))(nn.relu(norm()(x)))
    h = nn.relu(norm()(h))
    if self.fused_resampling:  # named as the nn.Conv it replaces
      return shortcut + ConvMeanPool(self.features, self.dtype,
                                     name='Conv_2')(h)
    return shortcut + downsample(conv(self.features, (3, 3))(h))


class Generator(nn.Module):
  """z (N, z_dim) → image (N, R, R, 3) in [-1, 1]."""
  resolution: int = 64
  width: int = 64
  dtype: Dtype = jnp.float32
  bn_momentum: float = 0.9
  fused_resampling: bool = False  # see `build_models`

  @nn.compact
  def __call__(self, z, train: bool = False):
    widths = generator_widths(self.resolution, self.width)
    x = nn.Dense(4 * 4 * 8 * self.width, dtype=self.dtype)(z)
    x = x.reshape(z.shape[:-1] + (4, 4, 8 * self.width))
    for features in widths:
      x = UpBlock(features, self.dtype, self.bn_momentum,
                  self.fused_resampling)(x, train)
    x = batch_norm(train, self.bn_momentum, self.dtype)(x)
    x = nn.Conv(3, (3, 3), dtype=self.dtype)(nn.relu(x))
    return jnp.tanh(x.astype(jnp.float32))


class Critic(nn.Module):
  """The global critic D: image → one score per image, shape (N,)."""
  resolution: int = 64
  width: int = 64
  dtype: Dtype = jnp.float32
  fused_resampling: bool = False  # see `build_models`

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no batch statistics in a WGAN-GP critic
    x = nn.Conv(self.width, (3, 3), dtype=self.dtype)(x.astype(self.dtype))
    for features in critic_widths(self.resolution, self.width):
      x = DownBlock(features, self.dtype, self.fused_resampling)(x)
    x = nn.relu(x).reshape(x.shape[:-3] + (-1,))
    return nn.Dense(1, dtype=self.dtype)(x)[..., 0].astype(jnp.float32)


class PatchCritic(nn.Module):
  """The PatchGAN critic Dp: one score per patch, an (R/8)x(R/8) map.

  Three down-sampling blocks at every resolution, so a patch covers the same
  number of pixels (as in pix2pix's PatchGAN) and the map grows with R: 8x8
  for 64x64 images (docs/design.md), 16x16 for 128x128.

  `__call__` returns the map's mean (the score used in the losses);
  `patch_scores` the map itself.
  """
  resolution: int = 64
  width: int = 64
  dtype: Dtype = jnp.float32
  fused_resampling: bool = False  # see `build_models`

  def setup(self):
    self.stem = nn.Conv(self.width, (3, 3), dtype=self.dtype)
    self.blocks = [DownBlock(f, self.dtype, self.fused_resampling) for f in
                   critic_widths(self.resolution, self.width)[:3]]
    self.head = nn.Conv(1, (3, 3), dtype=self.dtype)

  def patch_scores(self, x):
    x = self.stem(x.astype(self.dtype))
    for block in self.blocks:
      x = block(x)
    return self.head(nn.relu(x))[..., 0].astype(jnp.float32)

  def __call__(self, x, train: bool = False):
    del train
    return self.patch_scores(x).mean(axis=(-2, -1))


class DCGANGenerator(nn.Module):
  """Radford et al.: z → Dense → (ConvTranspose 4x4/2, BN, ReLU)* → tanh."""
  resolution: int = 64
  width: int = 64
  dtype: Dtype = jnp.float32
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, z, train: bool = False):
    norm = lambda: batch_norm(train, self.bn_momentum, self.dtype)
    n = _num_doublings(self.resolution, 4)
    x = nn.Dense(4 * 4 * 8 * self.width, dtype=self.dtype)(z)
    x = nn.relu(norm()(x.reshape(z.shape[:-1] + (4, 4, 8 * self.width))))
    for i in range(n - 1):
      features = self.width * 2 ** (n - 2 - i)
      x = nn.ConvTranspose(features, (4, 4), (2, 2), dtype=self.dtype)(x)
      x = nn.relu(norm()(x))
    x = nn.ConvTranspose(3, (4, 4), (2, 2), dtype=self.dtype)(x)
    return jnp.tanh(x.astype(jnp.float32))


class DCGANDiscriminator(nn.Module):
  """Radford et al.: (Conv 4x4/2, BN, LeakyReLU 0.2)* → Dense → logit (N,)."""
  resolution: int = 64
  width: int = 64
  dtype: Dtype = jnp.float32
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool = False):
    n = _num_doublings(self.resolution, 4)
    x = x.astype(self.dtype)
    for i in range(n):
      x = nn.Conv(self.width * 2 ** i, (4, 4), (2, 2), dtype=self.dtype)(x)
      if i > 0:  # DCGAN: no BN on the first layer
        x = batch_norm(train, self.bn_momentum, self.dtype)(x)
      x = nn.leaky_relu(x, 0.2)
    x = x.reshape(x.shape[:-3] + (-1,))
    return nn.Dense(1, dtype=self.dtype)(x)[..., 0].astype(jnp.float32)


def build_models(model_config, *, fused_resampling=False) -> FrozenDict:
  """{'generator': G, 'critic': D} plus 'patch_critic' for the WGAN.

  Frozen, so it can be a static argument of `jax.jit`.

  fused_resampling: the WGAN's re-sampling convs as `UpsampleConv` and
    `ConvMeanPool`, for inference and completion (`Model.from_config`),
    which differentiate w.r.t. the input only: there they cost less
    (bench/completion_torch.py). Training keeps the plain order: XLA:CPU's
    kernel gradients of the fused convs, and the gradient penalty's second
    derivatives through them, are about 2x slower than the plain ones
    (docs/design.md). Both forms take the same variables.
  """
  kw = dict(resolution=model_config.resolution, width=model_config.width,
            dtype=jnp.dtype(model_config.dtype))
  if model_config.arch == 'wgan':
    wgan_kw = dict(kw, fused_resampling=fused_resampling)
    return FrozenDict(generator=Generator(**wgan_kw), critic=Critic(**wgan_kw),
                      patch_critic=PatchCritic(**wgan_kw))
  if model_config.arch == 'dcgan':
    return FrozenDict(generator=DCGANGenerator(**kw),
                      critic=DCGANDiscriminator(**kw))
  raise ValueError(f"config.model.arch={model_config.arch!r}: expected "
                   "'wgan' or 'dcgan'")


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
    the inference form (`build_models(..., fused_resampling=True)`).
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
    all_nets = build_models(model_config, fused_resampling=True)
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
  stages and what follows them (pivotal tuning's `tune_layers='late'`).

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
  nets = build_models(model_config)
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
  nets = build_models(model_config)
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
  (`training.finalize`), `export` and `loading.load_model` of an unfinished
  work dir compute the same ones."""
  batches = num_batches or config.train.bn_recalibration_batches
  recalibrate = jax.jit(functools.partial(
      recalibrate_batch_stats, generator, num_batches=max(1, batches),
      batch_size=config.train.batch_size, z_dim=config.model.z_dim,
      arch=config.model.arch))
  return recalibrate(g_params, g_stats, recalibration_key(config))
