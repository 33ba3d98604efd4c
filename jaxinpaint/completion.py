"""Semantic completion by latent search (paper 3.2-3.3, eq. 5-8 and 10-15).

For each damaged image y with mask M (1 = known), Adam searches the
generator's latent space for ẑ whose image agrees with y's known pixels and
their gradients and looks real to the critics; the hole is then filled with
G(ẑ) and Poisson-blended into y.

The per-(image, restart) step — loss, gradient, Adam update, clip to [-1, 1]
— is written for one latent and `jax.vmap`ped over restarts and images, and
the whole optimization is one `lax.scan` inside `jit`. So an image's result
depends on its own (y, M, key) only, never on the rest of its batch, and G
runs in inference mode (BatchNorm running statistics) for the same reason.

Conventions: images float32 (N, H, W, C) in [-1, 1]; masks (N, H, W, 1),
1 = known; `variables` = {'generator': {'params', 'batch_stats'},
'critic': {'params', ...}, 'patch_critic': {'params'}} as returned by
`checkpoint.load_inference_variables`.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from jaxinpaint import image_ops, models, poisson


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
    raise ValueError(f'--loss {name!r}: expected one of {sorted(LOSSES)}')
  return LOSSES[name]


@dataclasses.dataclass(frozen=True)
class Options:
  """Optimizer settings (paper, section 4)."""
  steps: int = 1000
  restarts: int = 1  # K random initializations per image; the best is kept
  learning_rate: float = 0.03
  b1: float = 0.9
  b2: float = 0.999
  window: int = 7  # of the weights W (eq. 7)
  blend: bool = True  # Poisson blending (eq. 9) of G(ẑ) into y
  cg_tol: float = 1e-5
  cg_max_iters: int = 2000


def _render(nets, variables, z):
  """G(z) for one latent z (z_dim,) → (H, W, 3), inference mode."""
  return nets['generator'].apply(variables['generator'], z[None])[0]


def _prior(nets, variables, image, prior: str, arch: str):
  x = image[None]
  score = lambda name: nets[name].apply(variables[name], x)[0]
  if prior == 'critics':
    return -sum(score(n) for n in ('critic', 'patch_critic') if n in nets)
  if prior == 'yeh':
    if arch == 'dcgan':  # log(1 − σ(logit)) = −softplus(logit)
      return -jax.nn.softplus(score('critic'))
    return -score('critic')
  raise ValueError(f'unknown prior {prior!r}')


def weighted_l1(weights, a, b):
  return jnp.sum(weights * jnp.abs(a - b))


def _known_only(image, mask):
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
  image = _render(nets, variables, z)
  y = _known_only(y, mask)
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
                     window: int):
  """Eq. 10-15 for one latent: keep y1 where M = 1, y2's structure elsewhere.

  Both contextual terms are those of section 3.2 on complementary regions,
  so their gradients follow its masked rule with their own mask: M for the
  y1 terms (eq. 11) and 1 − M for the y2 term (eq. 12), applied alike to
  G(z) and to the reference. Hence y1 is read only where M = 1 and y2 only
  where M = 0, and the differences at a region's edge are one-sided instead
  of reaching into the other image's region.
  """
  image = _render(nets, variables, z)
  keep, swap = mask, 1.0 - mask
  y1 = _known_only(y1, keep)
  y2 = _known_only(y2, swap)
  w1 = image_ops.window_weights(mask, window)
  w2 = image_ops.complement_window_weights(mask, window)
  loss = spec.alpha1 * weighted_l1(w1, keep * image, keep * y1)
  for g, g1 in zip(image_ops.masked_gradients(image, keep),
                   image_ops.masked_gradients(y1, keep)):
    loss += spec.alpha2 * weighted_l1(w1, keep * g, keep * g1)
  for g, g2 in zip(image_ops.masked_gradients(image, swap),
                   image_ops.masked_gradients(y2, swap)):
    loss += spec.alpha3 * weighted_l1(w2, swap * g, swap * g2)
  x = image[None]
  loss += spec.beta * -nets['critic'].apply(variables['critic'], x)[0]
  return loss, image


def _optimize_one(loss_fn, z0, options: Options):
  """Adam on one latent, clipped to [-1, 1] after every step.

  Returns (final z, final loss, loss trace (steps,)). The trace entry t is
  the loss at the z that step t differentiated.
  """
  opt = optax.adam(options.learning_rate, b1=options.b1, b2=options.b2)

  def step(carry, _):
    z, opt_state = carry
    (loss, _), grad = jax.value_and_grad(loss_fn, has_aux=True)(z)
    updates, opt_state = opt.update(grad, opt_state, z)
    z = jnp.clip(optax.apply_updates(z, updates), -1.0, 1.0)
    return (z, opt_state), loss

  (z, _), trace = jax.lax.scan(step, (z0, opt.init(z0)), None,
                               length=options.steps)
  final_loss, _ = loss_fn(z)
  return z, final_loss, trace


def initial_latents(key, restarts, z_dim, arch):
  """K starting points: N(0, 1) for the WGAN (paper), U(-1, 1) for DCGAN."""
  return models.sample_latent(key, (restarts, z_dim), arch)


def _best_restart(loss_fn_for_image, key, options, z_dim, arch):
  """Optimizes K restarts of one image; keeps the lowest final loss."""
  z0 = initial_latents(key, options.restarts, z_dim, arch)
  z, final, trace = jax.vmap(
      functools.partial(_optimize_one, loss_fn_for_image, options=options))(z0)
  best = jnp.argmin(final)
  return z[best], final, trace[best]


def _finish(nets, variables, z_hat, final, trace, y, mask, options):
  """G(ẑ), the overlay and the Poisson blend: the dict `complete` returns."""
  generated = jax.vmap(lambda z: _render(nets, variables, z))(z_hat)
  overlay = mask * _known_only(y, mask) + (1.0 - mask) * generated
  cg_iterations = None
  if options.blend:
    blended, cg_info = poisson.poisson_blend(
        y, generated, mask, tol=options.cg_tol, max_iters=options.cg_max_iters)
    cg_iterations = cg_info['iterations']
  else:
    blended = overlay
  return dict(z=z_hat, generated=generated, overlay=overlay, blended=blended,
              final_loss=final, loss_trace=trace, cg_iterations=cg_iterations)


@functools.partial(jax.jit, static_argnames=('nets', 'spec', 'options',
                                             'arch'))
def complete(variables, y, mask, keys, *, nets, spec: LossSpec,
             options: Options, arch: str = 'wgan'):
  """Fills the holes of a batch of images.

  Args:
    variables: the networks' variables (see module docstring).
    y: (N, H, W, C) damaged images in [-1, 1]; hole pixels are never read
      for the loss (multiplied by M) and only known pixels enter the blend.
    mask: (N, H, W, 1), 1 = known pixel, 0 = hole.
    keys: (N,) PRNG keys, one per image (its restarts' initializations).
    nets: `models.build_models(config.model)` (hashable Flax modules).
    spec, options: `LOSSES[name]` and `Options(...)`.
    arch: 'wgan' or 'dcgan' (latent prior and the Yeh prior's form).

  Returns a dict: z (N, z_dim) the kept ẑ in [-1, 1]; generated G(ẑ);
  overlay M·y + (1 − M)·G(ẑ); blended (Poisson, eq. 9); final_loss (N, K)
  per restart; loss_trace (N, steps) of the kept restart; cg_iterations.
  """
  weights = image_ops.window_weights(mask, options.window)
  z_dim = _z_dim(variables)

  def per_image(y_i, m_i, w_i, key):
    loss_fn = lambda z: inpainting_loss(z, y_i, m_i, w_i, nets, variables,
                                        spec, arch)
    return _best_restart(loss_fn, key, options, z_dim, arch)

  z_hat, final, trace = jax.vmap(per_image)(y, mask, weights, keys)
  return _finish(nets, variables, z_hat, final, trace, y, mask, options)


@functools.partial(jax.jit, static_argnames=('nets', 'spec', 'options'))
def complete_conditional(variables, y1, y2, mask, keys, *, nets,
                         spec: ConditionalSpec = ConditionalSpec(),
                         options: Options = Options()):
  """Conditional face completion (eq. 10-15): a face like y1 whose parts
  where M = 0 (eyes, mouth, ...) follow the reference y2.

  y1, y2: (N, H, W, C) in [-1, 1]; mask (N, H, W, 1), 1 = keep from y1.
  y1 is read only where M = 1 and y2 only where M = 0.
  Returns the same dict as `complete`; `blended` Poisson-blends G(ẑ) into y1
  outside the kept region.
  """
  z_dim = _z_dim(variables)

  def per_image(a, b, m, key):
    loss_fn = lambda z: conditional_loss(z, a, b, m, nets, variables, spec,
                                         options.window)
    return _best_restart(loss_fn, key, options, z_dim, 'wgan')

  z_hat, final, trace = jax.vmap(per_image)(y1, y2, mask, keys)
  return _finish(nets, variables, z_hat, final, trace, y1, mask, options)


def _z_dim(variables) -> int:
  """The latent size, read off the first Dense layer's kernel."""
  return variables['generator']['params']['Dense_0']['kernel'].shape[0]


def image_keys(seed: int, indices) -> jax.Array:
  """One key per image from (seed, the image's index in its data set), so a
  result does not depend on batch size or on which images share a batch."""
  root = jax.random.key(seed)
  return jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.asarray(indices))
