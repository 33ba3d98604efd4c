"""Tests for jaxinpaint.image_ops: hand-computed cases, a loop reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinpaint.ops import image_ops

# Jitted once per shape: eager mode would compile every small op separately.
_grads = jax.jit(image_ops.masked_gradients)
_weights = jax.jit(image_ops.window_weights, static_argnums=1)


# 5x6 mask, 1 = known, 0 = hole. It has a hole touching nothing but known
# pixels, a hole pixel between two known ones (column 1 and 5, row 2), known
# pixels isolated along one axis ((2, 0), (2, 4) along W; (0, 2) along H), and
# a hole at the image border ((4, 0)).
MASK_5X6 = np.array([
    [1, 1, 1, 1, 1, 1],
    [1, 1, 0, 0, 1, 1],
    [1, 0, 0, 0, 1, 0],
    [1, 1, 1, 1, 1, 1],
    [0, 1, 1, 1, 1, 1],
], np.float32)

# Which stencil the rule picks (c = central, f = forward, b = backward,
# 0 = none), worked out by hand from MASK_5X6.
GY_CASES = [  # along H (rows)
    'ff00ff',
    'cb00cb',
    'cc00cc',
    'bfffcf',
    '0bbbbb',
]
GX_CASES = [  # along W (columns)
    'fccccb',
    'fb00fb',
    '000000',
    'fccccb',
    '0fcccb',
]


def _quadratic_image():
  # x = i^2 + 10 j^2: the three stencils give different values, so the test
  # sees which one was used. Along i: central 2i, forward 2i+1, backward 2i-1.
  i, j = np.meshgrid(np.arange(5), np.arange(6), indexing='ij')
  return (i**2 + 10 * j**2).astype(np.float32)


def _expected(cases, pos, scale):
  """Value of the derivative of scale * t^2 at t = pos for each stencil."""
  return {
      'c': scale * 2 * pos,
      'f': scale * (2 * pos + 1),
      'b': scale * (2 * pos - 1),
      '0': 0.0,
  }[cases]


def test_gradient_cases_by_hand():
  img = _quadratic_image()[..., None]
  gy, gx = _grads(jnp.asarray(img), MASK_5X6[..., None])
  exp_gy = np.array([[_expected(GY_CASES[i][j], i, 1.0) for j in range(6)]
                     for i in range(5)])
  exp_gx = np.array([[_expected(GX_CASES[i][j], j, 10.0) for j in range(6)]
                     for i in range(5)])
  np.testing.assert_array_equal(np.asarray(gy[..., 0]), exp_gy)
  np.testing.assert_array_equal(np.asarray(gx[..., 0]), exp_gx)


def test_gradient_spot_values():
  # A few entries spelled out as numbers.
  img = _quadratic_image()[..., None]
  gy, gx = _grads(jnp.asarray(img), MASK_5X6[..., None])
  gy, gx = np.asarray(gy[..., 0]), np.asarray(gx[..., 0])
  assert gy[0, 0] == 1.0  # forward at the top border: 1 - 0
  assert gy[2, 1] == 4.0  # hole pixel between known rows 1 and 3: (9-1)/2
  assert gy[3, 0] == 5.0  # backward above the border hole: 9 - 4
  assert gy[0, 2] == 0.0  # known pixel with only a hole below it
  assert gx[1, 1] == 10.0  # backward at the hole edge: 10 - 0
  assert gx[1, 4] == 90.0  # forward at the hole edge: 250 - 160
  assert gx[2, 4] == 0.0  # known pixel isolated between two holes
  assert gx[0, 5] == 90.0  # backward at the right border: 250 - 160


def _ref_gradient_1d(x, m):
  """Loop reference of the rule along the first axis of 1-D arrays."""
  n = len(x)
  out = np.zeros(n)
  k = lambda t: 0 <= t < n and m[t] > 0.5
  for i in range(n):
    if k(i - 1) and k(i + 1):
      out[i] = (x[i + 1] - x[i - 1]) / 2
    elif k(i) and k(i + 1):
      out[i] = x[i + 1] - x[i]
    elif k(i) and k(i - 1):
      out[i] = x[i] - x[i - 1]
  return out


def _ref_gradients(img, mask):
  """img (H, W, C), mask (H, W, 1) -> (gy, gx) with explicit loops."""
  h, w, c = img.shape
  gy = np.zeros((h, w, c))
  gx = np.zeros((h, w, c))
  for ch in range(c):
    for j in range(w):
      gy[:, j, ch] = _ref_gradient_1d(img[:, j, ch], mask[:, j, 0])
    for i in range(h):
      gx[i, :, ch] = _ref_gradient_1d(img[i, :, ch], mask[i, :, 0])
  return gy, gx


def _ref_window_weights(mask, window):
  h, w, _ = mask.shape
  r = window // 2
  out = np.zeros((h, w, 1))
  for i in range(h):
    for j in range(w):
      box = mask[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1, 0]
      out[i, j, 0] = mask[i, j, 0] * np.mean(1 - box)
  return out


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_gradients_match_loop_reference(seed):
  rng = np.random.default_rng(seed)
  img = rng.uniform(-1, 1, (3, 9, 11, 2)).astype(np.float32)
  # Sparse-ish random masks give many isolated pixels and one-sided cases.
  mask = (rng.uniform(size=(3, 9, 11, 1)) < 0.6).astype(np.float32)
  gy, gx = _grads(img, mask)
  for n in range(3):
    ref_gy, ref_gx = _ref_gradients(img[n], mask[n])
    np.testing.assert_allclose(np.asarray(gy[n]), ref_gy, atol=1e-6)
    np.testing.assert_allclose(np.asarray(gx[n]), ref_gx, atol=1e-6)


def test_gradients_ignore_hole_values():
  # Hole pixels of y may hold anything (even NaN): stencils never read them
  # except through case 1, which reads only known neighbours.
  rng = np.random.default_rng(3)
  img = rng.uniform(-1, 1, (8, 8, 3)).astype(np.float32)
  mask = (rng.uniform(size=(8, 8, 1)) < 0.5).astype(np.float32)
  garbage = np.where(mask > 0.5, img, np.nan).astype(np.float32)
  g1 = _grads(img, mask)
  g2 = _grads(garbage, mask)
  for a, b in zip(g1, g2):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_gradients_full_mask_is_central_inside():
  img = np.random.default_rng(4).uniform(-1, 1, (6, 7, 1)).astype(np.float32)
  gy, gx = _grads(img, np.ones((6, 7, 1), np.float32))
  np.testing.assert_allclose(gy[1:-1], (img[2:] - img[:-2]) / 2, atol=1e-7)
  np.testing.assert_allclose(gy[0], img[1] - img[0], atol=1e-7)
  np.testing.assert_allclose(gy[-1], img[-1] - img[-2], atol=1e-7)
  np.testing.assert_allclose(gx[:, 1:-1], (img[:, 2:] - img[:, :-2]) / 2,
                             atol=1e-7)


def test_window_weights_by_hand():
  m = MASK_5X6[..., None]
  w3 = np.asarray(_weights(m, 3))[..., 0]
  assert w3[0, 0] == 0.0  # 2x2 in-image box, no hole
  np.testing.assert_allclose(w3[0, 2], 2 / 6)  # 2x3 box with 2 holes
  np.testing.assert_allclose(w3[1, 1], 3 / 9)
  np.testing.assert_allclose(w3[4, 1], 1 / 6)  # bottom border, 1 hole
  np.testing.assert_allclose(w3[2, 4], 3 / 9)  # isolated known pixel
  assert w3[2, 2] == 0.0 and w3[4, 0] == 0.0  # holes weigh 0
  w7 = np.asarray(_weights(m, 7))[..., 0]
  np.testing.assert_allclose(w7[0, 0], 5 / 16)  # 4x4 in-image box
  np.testing.assert_allclose(w7[2, 4], 6 / 25)  # 5x5 in-image box


@pytest.mark.parametrize('window', [3, 7])
def test_window_weights_match_loop_reference(window):
  rng = np.random.default_rng(window)
  mask = (rng.uniform(size=(2, 13, 10, 1)) < 0.7).astype(np.float32)
  w = _weights(mask, window)
  for n in range(2):
    np.testing.assert_allclose(np.asarray(w[n]),
                               _ref_window_weights(mask[n], window),
                               atol=1e-6)


def test_mean_window_keeps_constants_and_matches_reference():
  x = np.full((5, 4, 3), 2.5, np.float32)
  mean = jax.jit(image_ops.mean_window, static_argnums=1)
  np.testing.assert_allclose(np.asarray(mean(x, 7)), x, rtol=1e-6)
  rng = np.random.default_rng(5)
  x = rng.normal(size=(9, 8, 2)).astype(np.float32)
  out = np.asarray(mean(x, 5))
  for i in (0, 4, 8):
    for j in (0, 3, 7):
      box = x[max(i - 2, 0):i + 3, max(j - 2, 0):j + 3]
      np.testing.assert_allclose(out[i, j], box.mean(axis=(0, 1)), atol=1e-6)


def test_complement_window_weights():
  m = MASK_5X6[..., None]
  w2 = np.asarray(image_ops.complement_window_weights(m, window=3))[..., 0]
  # Hole (2, 2): 3x3 box with 4 known of 9 -> 1 - 4/9; known pixels weigh 0.
  np.testing.assert_allclose(w2[2, 2], 1 - 4 / 9)
  # Hole (4, 0): 2x2 box rows 3-4, cols 0-1 with 3 known -> 1 - 3/4.
  np.testing.assert_allclose(w2[4, 0], 1 - 3 / 4)
  assert w2[0, 0] == 0.0


def test_even_window_rejected():
  with pytest.raises(ValueError, match='odd'):
    image_ops.mean_window(jnp.zeros((4, 4, 1)), 6)


def test_vmap_equals_batch_and_extra_leading_dims():
  rng = np.random.default_rng(6)
  img = rng.uniform(-1, 1, (2, 3, 8, 9, 3)).astype(np.float32)
  mask = (rng.uniform(size=(2, 3, 8, 9, 1)) < 0.5).astype(np.float32)
  flat_img, flat_mask = img.reshape(6, 8, 9, 3), mask.reshape(6, 8, 9, 1)

  batch = _grads(flat_img, flat_mask)
  per_image = jax.jit(jax.vmap(image_ops.masked_gradients))(flat_img,
                                                            flat_mask)
  nested = _grads(img, mask)
  for b, v, n in zip(batch, per_image, nested):
    np.testing.assert_array_equal(np.asarray(b), np.asarray(v))
    np.testing.assert_array_equal(np.asarray(b),
                                  np.asarray(n).reshape(6, 8, 9, 3))

  wb = _weights(flat_mask, 7)
  wv = jax.jit(jax.vmap(image_ops.window_weights))(flat_mask)
  wn = _weights(mask, 7)
  np.testing.assert_array_equal(np.asarray(wb), np.asarray(wv))
  np.testing.assert_array_equal(np.asarray(wb),
                                np.asarray(wn).reshape(6, 8, 9, 1))


def test_gradients_are_differentiable_through_known_pixels():
  # The completion loss differentiates through G(z): gradients must be finite
  # and zero for pixels that no stencil reads.
  mask = MASK_5X6[..., None]
  img = jnp.asarray(_quadratic_image()[..., None])

  def loss(x):
    gy, gx = image_ops.masked_gradients(x, mask)
    return jnp.sum(mask * (gy**2 + gx**2))

  g = np.asarray(jax.grad(loss)(img))
  assert np.all(np.isfinite(g))
  # Hole (2, 2) has no known neighbour along W and only hole ones along H.
  assert g[2, 2, 0] == 0.0
