"""The completion objectives (paper 3.2-3.3, eq. 5-8 and 10-15).

Each loss is written for one latent z and one image and returns (loss,
G(z)); the search (`search.py`) vmaps it over restarts and images, and
pivotal tuning (`tuning.py`) differentiates the same loss with respect to
G's parameters. `Objective` binds a loss's weights to the networks, so the
jitted programs take it as one static argument.

Conventions: an image (H, W, C) in [-1, 1], its mask (H, W, 1) with 1 =
known; `nets` the model's networks (static), `variables` =
{'generator': {'params', 'batch_stats'}, 'critic': {'params', ...},
'patch_critic': {'params'}}. G runs in inference mode (BatchNorm running
statistics), so an image's loss depends on that image alone.
"""
import dataclasses

import jax
import jax.numpy as jnp

from jaxinpaint.ops import image_ops


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """Weights of one completion loss.

  loss = α·Σ W|M(G(z) − y)| + β·Σ W|M(∇G(z) − ∇y)| + η·prior(G(z)).
  prior 'critics' is the paper's −D(G(z)) − Dp(G(z)) (eq. 8; −D alone for
  a model without Dp); prior 'yeh' is Yeh et al.'s log(1 − σ(D(G(z)))) for
  a DCGAN discriminator and −D(G(z)) (global critic only) for a WGAN.
  """
  alpha: float
  beta: float
  eta: float
  prior: str = 'critics'


# Defaults. The paper's Tables 1-2 try α, β ∈ {(0.1, 0.9), (0.5, 0.5)} and
# η ∈ {1.0, 0.5}; (0.1, 0.9, 0.5) has the lowest MSE in three of the four
# table columns (CelebA three squares, SVHN central and three squares) and
# is the default. Yeh et al. weigh the contextual L1 by 1 and the prior by
# λ = 0.003; the paper's ablation adds the gradient term with (0.1, 0.9).
LOSSES = {
    'paper': LossSpec(alpha=0.1, beta=0.9, eta=0.5, prior='critics'),
    'yeh': LossSpec(alpha=1.0, beta=0.0, eta=0.003, prior='yeh'),
    'yeh_gradient': LossSpec(alpha=0.1, beta=0.9, eta=0.003, prior='yeh'),
}


def get_loss(name: str) -> LossSpec:
  if name not in LOSSES:
    raise ValueError(f'loss {name!r}: expected one of {sorted(LOSSES)}')
  return LOSSES[name]


def render(nets, variables, z):
  """G(z) for one latent z (z_dim,) → (H, W, 3), inference mode."""
  return nets['generator'].apply(variables['generator'], z[None])[0]


def global_critic_prior(nets, variables, image, arch: str):
  """−D(G(z)) for a WGAN critic; log(1 − σ(D(G(z)))) for a DCGAN
  discriminator, whose output is a logit (Yeh et al.'s prior)."""
  score = nets['critic'].apply(variables['critic'], image[None])[0]
  if arch == 'dcgan':  # log(1 − σ(logit)) = −softplus(logit)
    return -jax.nn.softplus(score)
  return -score


def _prior(nets, variables, image, prior: str, arch: str):
  if prior == 'critics':
    return -sum(nets[n].apply(variables[n], image[None])[0]
                for n in ('critic', 'patch_critic') if n in nets)
  if prior == 'yeh':
    return global_critic_prior(nets, variables, image, arch)
  raise ValueError(f'unknown prior {prior!r}')


def weighted_l1(weights, a, b):
  return jnp.sum(weights * jnp.abs(a - b))


def known_only(image, mask):
  """`image` with its pixels of mask 0 set to 0.

  Multiplying by M alone is not enough to ignore them: 0 · NaN = NaN, and a
  damaged image may hold anything (NaN included) in its hole. Pixels with
  M > 0 are untouched, so M · result = M · image whenever the latter is
  finite.
  """
  return jnp.where(mask > 0, image, jnp.zeros_like(image))


def inpainting_loss(z, y, mask, weights, nets, variables, spec: LossSpec,
                    arch: str):
  """Eq. 5-8 for one latent and one image: (loss, G(z)).

  y (H, W, C) in [-1, 1], mask (H, W, 1), weights = W of eq. 7 (H, W, 1).
  The gradients of G(z) and y use the same mask, so they are comparable.
  y's hole pixels are never read: they may hold anything, NaN included.
  """
  image = render(nets, variables, z)
  y = known_only(y, mask)
  loss = spec.alpha * weighted_l1(weights, mask * image, mask * y)
  if spec.beta:
    g_image = image_ops.masked_gradients(image, mask)
    g_y = image_ops.masked_gradients(y, mask)
    loss += spec.beta * sum(weighted_l1(weights, mask * a, mask * b)
                            for a, b in zip(g_image, g_y))
  if spec.eta:
    loss += spec.eta * _prior(nets, variables, image, spec.prior, arch)
  return loss, image


@dataclasses.dataclass(frozen=True)
class ConditionalSpec:
  """Weights of eq. 10-12: α1 values and α2 gradients of y1 where M = 1,
  α3 gradients of the reference y2 where M = 0, β·(−D(G(z)))."""
  alpha1: float = 0.1
  alpha2: float = 0.9
  alpha3: float = 0.9
  beta: float = 0.5


def conditional_loss(z, y1, y2, mask, nets, variables, spec: ConditionalSpec,
                     window: int, arch: str):
  """Eq. 10-15 for one latent: keep y1 where M = 1, y2's structure elsewhere.

  Both contextual terms are those of section 3.2 on complementary regions,
  so their gradients follow its masked rule with their own mask: M for the
  y1 terms (eq. 11) and 1 − M for the y2 term (eq. 12), applied alike to
  G(z) and to the reference. Hence y1 is read only where M = 1 and y2 only
  where M = 0, and the differences at a region's edge are one-sided instead
  of reaching into the other image's region. The critic term is that of
  the model's arch (`global_critic_prior`): −D for a WGAN critic, Yeh et
  al.'s log(1 − σ(D)) for a DCGAN discriminator.
  """
  image = render(nets, variables, z)
  keep, swap = mask, 1.0 - mask
  y1 = known_only(y1, keep)
  y2 = known_only(y2, swap)
  w1 = image_ops.window_weights(mask, window)
  w2 = image_ops.complement_window_weights(mask, window)
  loss = spec.alpha1 * weighted_l1(w1, keep * image, keep * y1)
  for g, g1 in zip(image_ops.masked_gradients(image, keep),
                   image_ops.masked_gradients(y1, keep)):
    loss += spec.alpha2 * weighted_l1(w1, keep * g, keep * g1)
  for g, g2 in zip(image_ops.masked_gradients(image, swap),
                   image_ops.masked_gradients(y2, swap)):
    loss += spec.alpha3 * weighted_l1(w2, swap * g, swap * g2)
  if spec.beta:
    loss += spec.beta * global_critic_prior(nets, variables, image, arch)
  return loss, image


@dataclasses.dataclass(frozen=True)
class Objective:
  """The loss of one latent for one image, `(variables, z, *image_data)` →
  (loss, G(z)). Hashable, so the jitted search takes it as a static arg.

  image_data: (y, mask, weights) for a `LossSpec`, (y1, y2, mask) for a
  `ConditionalSpec`.
  """
  nets: object
  spec: object
  arch: str
  window: int

  def __call__(self, variables, z, *data):
    if isinstance(self.spec, ConditionalSpec):
      return conditional_loss(z, *data, self.nets, variables, self.spec,
                              self.window, self.arch)
    return inpainting_loss(z, *data, self.nets, variables, self.spec,
                           self.arch)
