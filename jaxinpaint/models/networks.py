"""The networks: residual generator G, layer-norm critic D, PatchGAN critic Dp
(paper, section 3.1) and the DCGAN pair of the Yeh et al. baseline, their
re-sampling blocks (with the fused 3x3 convs `UpsampleConv` and
`ConvMeanPool`), and `build_models`, which builds them from a model config.

All modules take NHWC images in [-1, 1]. Parameters are float32; `dtype` sets
the activations (bfloat16 on GPUs). Critic scores are returned in float32.
The handle of a trained model is `model.Model`.
"""
import functools
import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
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
