"""The gradient penalty against independent per-example computations."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxinpaint import models
from jaxinpaint.training import gan_losses


def tiny_critic():
  net = models.Critic(resolution=32, width=4)
  x = jax.random.uniform(jax.random.key(0), (5, 32, 32, 3), minval=-1)
  params = net.init(jax.random.key(1), x)
  return jax.jit(lambda images: net.apply(params, images)), x


def test_gradient_penalty_matches_per_example_vmap_grad():
  critic, x = tiny_critic()
  per_example = jax.jit(jax.vmap(jax.grad(lambda xi: critic(xi[None])[0])))(x)
  norms = np.sqrt((np.asarray(per_example, np.float64) ** 2).sum((1, 2, 3)))
  expected = np.mean((norms - 1.0) ** 2)
  np.testing.assert_allclose(gan_losses.gradient_penalty(critic, x), expected,
                             rtol=1e-5)


def test_gradient_penalty_matches_finite_differences():
  # D(x) = sum(w * x) per example: the gradient is w, its norm |w|.
  w = jax.random.normal(jax.random.key(2), (3, 4, 4, 2))
  critic = lambda x: jnp.sum(w * x, axis=(1, 2, 3))
  x = jax.random.normal(jax.random.key(3), (3, 3, 4, 4, 2))[0]
  # Central finite differences of each example's score, coordinate by
  # coordinate, in float64 numpy.
  wn = np.asarray(w, np.float64)
  xn = np.asarray(x, np.float64)
  f = lambda xi, i: np.sum(wn[i] * xi)
  grads = np.zeros_like(xn)
  h = 1e-3
  for i in range(xn.shape[0]):
    for idx in np.ndindex(xn.shape[1:]):
      e = np.zeros(xn.shape[1:])
      e[idx] = h
      grads[i][idx] = (f(xn[i] + e, i) - f(xn[i] - e, i)) / (2 * h)
  norms = np.sqrt((grads ** 2).sum((1, 2, 3)))
  np.testing.assert_allclose(gan_losses.gradient_penalty(critic, x),
                             np.mean((norms - 1) ** 2), rtol=1e-4)


def test_gradient_penalty_is_finite_for_a_flat_critic():
  critic = lambda x: jnp.zeros(x.shape[0])
  x = jnp.ones((2, 4, 4, 3))
  gp, grad = jax.value_and_grad(
      lambda x: gan_losses.gradient_penalty(critic, x))(x)
  np.testing.assert_allclose(gp, 1.0, rtol=1e-5)  # (0 - 1)^2
  assert np.isfinite(np.asarray(grad)).all()


def test_wgan_gp_critic_loss_composition():
  critic, x = tiny_critic()
  fake = -x
  key = jax.random.key(4)
  loss, m = gan_losses.wgan_gp_critic_loss(critic, x, fake, key, 10.0)
  x_hat = gan_losses.interpolate(key, x, fake)
  expected = (critic(fake).mean() - critic(x).mean()
              + 10.0 * gan_losses.gradient_penalty(critic, x_hat))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(m['wasserstein'],
                             critic(x).mean() - critic(fake).mean(), rtol=1e-5)
  # x̂ lies on the segment between real and fake, per example.
  eps = (x_hat - fake) / (x - fake)
  eps = np.asarray(eps).reshape(5, -1)
  np.testing.assert_allclose(eps, eps[:, :1].repeat(eps.shape[1], 1),
                             atol=1e-4)
  assert ((eps >= 0) & (eps <= 1)).all()


def test_gan_losses_against_numpy():
  r = np.array([0.3, -2.0, 1.5])
  f = np.array([-0.1, 0.7, 3.0])
  sig = lambda t: 1 / (1 + np.exp(-t))
  np.testing.assert_allclose(
      gan_losses.gan_discriminator_loss(jnp.array(r), jnp.array(f)),
      np.mean(-np.log(sig(r))) + np.mean(-np.log(1 - sig(f))), rtol=1e-5)
  np.testing.assert_allclose(gan_losses.gan_generator_loss(jnp.array(f)),
                             np.mean(-np.log(sig(f))), rtol=1e-5)
