"""Adversarial losses: WGAN-GP (paper, eq. 3-4) and the standard GAN loss."""
import jax
import jax.numpy as jnp

# Inside the square root of the gradient norm: a zero gradient must not
# give a NaN derivative (d sqrt(x)/dx is infinite at 0).
GRAD_NORM_EPS = 1e-12


def interpolation_weights(key, shape):
  """The ε of `interpolate` for images of `shape`: (N, 1, ..., 1)."""
  return jax.random.uniform(key, (shape[0],) + (1,) * (len(shape) - 1))


def interpolate(key, real, fake):
  """x̂ = ε·real + (1 − ε)·fake, one ε ~ U(0, 1) per example."""
  eps = interpolation_weights(key, real.shape)
  return eps * real + (1.0 - eps) * fake


def gradient_penalty(critic_fn, x_hat):
  """E[(‖∇x̂ D(x̂)‖₂ − 1)²] over the batch.

  `critic_fn` maps (N, H, W, C) to (N,) with no interaction between examples
  (the critics use LayerNorm, not BatchNorm), so the gradient of the summed
  scores is the stack of the per-example gradients: one backward pass.
  """
  grads = jax.grad(lambda x: critic_fn(x).sum())(x_hat)
  sq_norm = jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim)))
  norm = jnp.sqrt(sq_norm + GRAD_NORM_EPS)
  return jnp.mean(jnp.square(norm - 1.0))


def wgan_gp_critic_loss(critic_fn, real, fake, key, gp_weight):
  """E[D(fake)] − E[D(real)] + λ·GP; returns (loss, metrics)."""
  real_score = critic_fn(real).mean()
  fake_score = critic_fn(fake).mean()
  gp = gradient_penalty(critic_fn, interpolate(key, real, fake))
  wasserstein = real_score - fake_score
  return -wasserstein + gp_weight * gp, {'wasserstein': wasserstein, 'gp': gp}


def gan_discriminator_loss(real_logits, fake_logits):
  """Binary cross-entropy: −log σ(D(x)) − log(1 − σ(D(G(z))))."""
  return (jax.nn.softplus(-real_logits).mean()
          + jax.nn.softplus(fake_logits).mean())


def gan_generator_loss(fake_logits):
  """Non-saturating: −log σ(D(G(z)))."""
  return jax.nn.softplus(-fake_logits).mean()
