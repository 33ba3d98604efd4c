"""The networks: shapes and parameter counts against hand-derived sums, the
fused re-sampling convs against the plain steps in numpy."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxinpaint import models


def conv(k, cin, cout):
  return k * k * cin * cout + cout


def dense(cin, cout):
  return cin * cout + cout


def generator_params(res, d, z=128):
  n = {32: 3, 64: 4, 128: 5}[res]
  outs = ([8] * max(n - 3, 0) + [4, 2, 1])[-n:]
  total, cin = dense(z, 16 * 8 * d), 8 * d
  for m in outs:
    cout = m * d
    total += (2 * cin + conv(3, cin, cout) + 2 * cout + conv(3, cout, cout)
              + conv(1, cin, cout))
    cin = cout
  return total + 2 * d + conv(3, d, 3)


def down_blocks(widths, d):
  total, cin = 0, d
  for cout in widths:
    total += (2 * cin + conv(3, cin, cin) + 2 * cin + conv(3, cin, cout)
              + conv(1, cin, cout))
    cin = cout
  return total


def critic_params(res, d):
  n = {32: 3, 64: 4, 128: 5}[res]
  widths = [m * d for m in [2, 4, 8, 8, 8][:n]]
  return conv(3, 3, d) + down_blocks(widths, d) + dense(16 * widths[-1], 1)


def patch_critic_params(res, d):
  del res  # three blocks at every resolution: a fixed patch size
  widths = [2 * d, 4 * d, 8 * d]
  return conv(3, 3, d) + down_blocks(widths, d) + conv(3, widths[-1], 1)


def init(net, x):
  return jax.eval_shape(net.init, jax.random.key(0), x)


@pytest.mark.parametrize('res', [32, 64, 128])
@pytest.mark.parametrize('width', [4, 64])
def test_wgan_networks_shapes_and_counts(res, width):
  image = jnp.zeros((2, res, res, 3))
  z = jnp.zeros((2, 128))
  g = models.Generator(resolution=res, width=width)
  d = models.Critic(resolution=res, width=width)
  dp = models.PatchCritic(resolution=res, width=width)
  g_vars, d_vars, dp_vars = init(g, z), init(d, image), init(dp, image)
  assert models.count_params(g_vars['params']) == generator_params(res, width)
  assert models.count_params(d_vars['params']) == critic_params(res, width)
  assert (models.count_params(dp_vars['params'])
          == patch_critic_params(res, width))
  assert jax.eval_shape(g.apply, g_vars, z).shape == (2, res, res, 3)
  assert jax.eval_shape(d.apply, d_vars, image).shape == (2,)
  assert jax.eval_shape(dp.apply, dp_vars, image).shape == (2,)
  patch_map = jax.eval_shape(
      lambda v, x: dp.apply(v, x, method=dp.patch_scores), dp_vars, image)
  assert patch_map.shape == (2, res // 8, res // 8)


def test_paper_size_counts():
  # The 64x64, d = 64 networks of docs/training.md's table.
  assert generator_params(64, 64) == 8_541_443
  assert critic_params(64, 64) == 7_492_801
  assert patch_critic_params(64, 64) == 2_504_897


def test_real_forward_pass_is_bounded_and_batch_independent():
  g = models.Generator(resolution=32, width=4)
  z = jax.random.normal(jax.random.key(1), (4, 128))
  v = g.init(jax.random.key(0), z)
  out = g.apply(v, z)  # inference mode: running statistics
  assert out.shape == (4, 32, 32, 3)
  assert float(jnp.abs(out).max()) <= 1.0
  one = g.apply(v, z[:1])
  assert jnp.allclose(one, out[:1], atol=1e-6)


@pytest.mark.parametrize('res', [32, 64])
def test_dcgan_shapes(res):
  cfg = ml_collections.ConfigDict(dict(arch='dcgan', resolution=res, width=8,
                                       z_dim=100, dtype='float32'))
  nets = models.build_models(cfg)
  assert set(nets) == {'generator', 'critic'}
  z = jnp.zeros((3, 100))
  gv = init(nets['generator'], z)
  assert jax.eval_shape(nets['generator'].apply, gv, z).shape == (3, res,
                                                                  res, 3)
  image = jnp.zeros((3, res, res, 3))
  dv = init(nets['critic'], image)
  assert jax.eval_shape(nets['critic'].apply, dv, image).shape == (3,)


def test_bad_resolution():
  with pytest.raises(ValueError, match='resolution=48'):
    models.generator_widths(48, 8)


def test_bfloat16_activations_keep_float32_params():
  g = models.Generator(resolution=32, width=4, dtype=jnp.bfloat16)
  z = jnp.ones((2, 128))
  v = g.init(jax.random.key(0), z)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(v))
  assert g.apply(v, z).dtype == jnp.float32


def test_latent_priors():
  u = models.sample_latent(jax.random.key(0), (1000, 100), 'dcgan')
  assert float(u.min()) >= -1 and float(u.max()) <= 1
  n = models.sample_latent(jax.random.key(0), (1000, 128), 'wgan')
  assert abs(float(n.std()) - 1) < 0.02


# ---------------------------------------------------------------------------
# The fused re-sampling convs against the plain two steps, written in numpy.

def np_conv3x3_same(x, kernel, bias):
  """'SAME' 3x3 convolution, NHWC / HWIO, as nine shifted matrix products."""
  n, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros((n, h, w, kernel.shape[-1])) + bias
  for a in range(3):
    for b in range(3):
      out += xp[:, a:a + h, b:b + w] @ kernel[a, b]
  return out


def np_mean_pool(x):
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def np_upsample(x):
  return x.repeat(2, axis=1).repeat(2, axis=2)


@pytest.fixture
def conv_case():
  # Odd sizes and values, a random bias: every border tap is exercised.
  rng = np.random.default_rng(0)
  return (rng.normal(size=(2, 6, 10, 3)),
          rng.normal(size=(3, 3, 3, 5)), rng.normal(size=5))


def test_conv_mean_pool_is_conv_then_pool(conv_case):
  x, kernel, bias = conv_case
  params = {'params': {'kernel': kernel.astype(np.float32),
                       'bias': bias.astype(np.float32)}}
  out = models.ConvMeanPool(5).apply(params, x.astype(np.float32))
  np.testing.assert_allclose(
      out, np_mean_pool(np_conv3x3_same(x, kernel, bias)), atol=1e-5)


def test_upsample_conv_is_upsample_then_conv(conv_case):
  x, kernel, bias = conv_case
  params = {'params': {'kernel': kernel.astype(np.float32),
                       'bias': bias.astype(np.float32)}}
  out = models.UpsampleConv(5).apply(params, x.astype(np.float32))
  assert out.shape == (2, 12, 20, 5)
  np.testing.assert_allclose(
      out, np_conv3x3_same(np_upsample(x), kernel, bias), atol=1e-5)
  # Leading batch axes, as nn.Conv takes them.
  nested = models.UpsampleConv(5).apply(params,
                                        x[None].astype(np.float32))
  np.testing.assert_allclose(nested[0], out, atol=1e-6)


def test_box_filtered_kernel_by_hand():
  # One axis of a 3x3 kernel with taps 1, 10, 100 (the other all ones):
  # (k0, k0 + k1, k1 + k2, k2) along it, (1, 2, 2, 1) across.
  kernel = np.array([1., 10., 100.])[:, None, None, None] * np.ones(
      (3, 3, 1, 1))
  got = np.asarray(models.box_filtered_kernel(kernel))[..., 0, 0]
  np.testing.assert_array_equal(
      got, np.outer([1, 11, 110, 100], [1, 2, 2, 1]))


def test_fused_form_takes_the_same_variables():
  # Completion's nets (fused re-sampling) and training's (plain) have the
  # same parameter tree, initialize it identically (names, shapes, values)
  # and compute the same functions of it, to float rounding.
  cfg = ml_collections.ConfigDict(dict(arch='wgan', resolution=32, width=4,
                                       z_dim=16, dtype='float32'))
  plain = models.build_models(cfg)
  fused = models.build_models(cfg, fused_resampling=True)
  rng = np.random.default_rng(0)
  inputs = {'generator': rng.normal(size=(3, 16)),
            'critic': np.tanh(rng.normal(size=(3, 32, 32, 3))),
            'patch_critic': np.tanh(rng.normal(size=(3, 32, 32, 3)))}
  for name, x in inputs.items():
    x = jnp.asarray(x, jnp.float32)
    variables = plain[name].init(jax.random.key(5), x)
    jax.tree.map(np.testing.assert_array_equal, variables,
                 fused[name].init(jax.random.key(5), x))
    np.testing.assert_allclose(fused[name].apply(variables, x),
                               plain[name].apply(variables, x),
                               rtol=1e-5, atol=1e-5, err_msg=name)
  assert fused['patch_critic'].fused_resampling
  assert models.Model.from_config(
      cfg, models.random_variables(cfg)).nets['critic'].fused_resampling
