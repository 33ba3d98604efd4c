"""Tests for jaxinpaint.poisson against an explicitly built sparse system."""
import jax
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

from jaxinpaint.ops import poisson


def _reference_blend(y, g, mask):
  """Solves eq. 9 for one channel with scipy, built pixel by pixel.

  y, g: (H, W) float64; mask: (H, W), 1 = known. For each hole pixel p and
  each in-image 4-neighbour q: (x_p - x_q) = (g_p - g_q), with x_q = y_q
  moved to the right-hand side when q is known.
  """
  h, w = y.shape
  holes = [(i, j) for i in range(h) for j in range(w) if mask[i, j] < 0.5]
  index = {p: k for k, p in enumerate(holes)}
  rows, cols, vals = [], [], []
  rhs = np.zeros(len(holes))
  for k, (i, j) in enumerate(holes):
    for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
      qi, qj = i + di, j + dj
      if not (0 <= qi < h and 0 <= qj < w):
        continue  # Neumann: no equation term across the image border
      rows.append(k)
      cols.append(k)
      vals.append(1.0)
      rhs[k] += g[i, j] - g[qi, qj]
      if (qi, qj) in index:
        rows.append(k)
        cols.append(index[(qi, qj)])
        vals.append(-1.0)
      else:
        rhs[k] += y[qi, qj]  # Dirichlet: known neighbour
  a = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(len(holes),) * 2)
  sol = scipy.sparse.linalg.spsolve(a, rhs)
  x = y.copy()
  for k, (i, j) in enumerate(holes):
    x[i, j] = sol[k]
  return x


def _reference_batch(y, g, mask):
  out = np.empty(y.shape, np.float64)
  for n in range(y.shape[0]):
    for c in range(y.shape[-1]):
      out[n, ..., c] = _reference_blend(y[n, ..., c].astype(np.float64),
                                        g[n, ..., c].astype(np.float64),
                                        mask[n, ..., 0])
  return out


def _smooth_random(rng, shape):
  # Low-frequency content plus noise, roughly like natural images in [-1, 1].
  n, h, w, c = shape
  coarse = rng.uniform(-1, 1, (n, h // 4 + 1, w // 4 + 1, c))
  up = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, :h, :w]
  return np.clip(up + 0.2 * rng.normal(size=shape), -1, 1).astype(np.float32)


def _center(n, h, w):
  m = np.ones((n, h, w, 1), np.float32)
  m[:, h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2] = 0
  return m


def _irregular(rng, n, h, w):
  # Random blobs, some touching the image border (Neumann edges in the hole).
  m = (rng.uniform(size=(n, h, w, 1)) < 0.7).astype(np.float32)
  m[:, 2:h // 2, 3:w - 5] = 0
  m[:, h - 4:, :w // 3] = 0
  return m


# Jitted once: eager mode would compile every small op separately.
_blend = jax.jit(poisson.poisson_blend,
                 static_argnames=('tol', 'max_iters'))
_harmonic = jax.jit(poisson.harmonic_fill)


@pytest.mark.parametrize('mask_kind', ['center', 'irregular'])
def test_matches_sparse_direct_solve(mask_kind):
  rng = np.random.default_rng(0 if mask_kind == 'center' else 1)
  n, h, w, c = 3, 20, 24, 3
  y = _smooth_random(rng, (n, h, w, c))
  g = _smooth_random(rng, (n, h, w, c))
  mask = (_center(n, h, w) if mask_kind == 'center' else
          _irregular(rng, n, h, w))
  # Hole pixels of y hold garbage: the blend must not read them.
  y_damaged = np.where(mask > 0.5, y, np.nan).astype(np.float32)
  x, info = _blend(y_damaged, g, mask)
  x = np.asarray(x)
  ref = _reference_batch(np.where(mask > 0.5, y, 0), g, mask)
  np.testing.assert_allclose(x, ref, atol=1e-4)
  known = np.broadcast_to(mask > 0.5, x.shape)
  np.testing.assert_array_equal(x[known], y[known])  # exactly y
  assert info['iterations'].shape == (n,)
  assert info['residual'].shape == (n,)
  assert np.all(np.asarray(info['converged']))
  assert np.all(np.asarray(info['residual']) <= 1e-6)
  assert np.all(np.asarray(info['iterations']) > 0)


def test_single_hole_pixel_by_hand():
  # One hole pixel with 4 known neighbours: 4 x_p - Σ y_q = 4 g_p - Σ g_q,
  # so x_p = mean(y_q) + g_p - mean(g_q).
  y = np.arange(25, dtype=np.float32).reshape(5, 5, 1) ** 1.5 / 10
  g = np.cos(np.arange(25, dtype=np.float32)).reshape(5, 5, 1)
  mask = np.ones((5, 5, 1), np.float32)
  mask[2, 2] = 0
  x, info = _blend(y, g, mask)
  nb = [(1, 2), (3, 2), (2, 1), (2, 3)]
  expected = (np.mean([y[q][0] for q in nb]) + g[2, 2, 0] -
              np.mean([g[q][0] for q in nb]))
  np.testing.assert_allclose(np.asarray(x)[2, 2, 0], expected, rtol=1e-6)
  assert int(info['iterations']) == 1  # a 1x1 system: one CG step


def test_harmonic_fill_reproduces_linear_ramp():
  # A linear ramp is discrete-harmonic, so filling a hole that does not
  # touch the border must give the ramp back.
  i, j = np.meshgrid(np.arange(16), np.arange(18), indexing='ij')
  ramp = (0.05 * i - 0.03 * j + 0.1).astype(np.float32)
  y = np.stack([ramp, -ramp], axis=-1)[None]  # (1, 16, 18, 2)
  mask = _center(1, 16, 18)
  x, info = _harmonic(np.where(mask > 0.5, y, 0), mask)
  np.testing.assert_allclose(np.asarray(x), y, atol=1e-5)
  assert bool(info['converged'][0])


def test_guide_equal_to_solution_is_returned():
  # If y and the guide are the same image, the guide already satisfies the
  # equations for any mask, including holes on the border.
  rng = np.random.default_rng(2)
  img = _smooth_random(rng, (2, 12, 12, 1))
  mask = _irregular(rng, 2, 12, 12)
  x, info = _blend(img, img, mask)
  np.testing.assert_allclose(np.asarray(x), img, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(info['iterations']), [0, 0])


def test_constant_offset_of_guide_is_removed():
  # Poisson blending keeps gradients: guide + constant gives the same result.
  rng = np.random.default_rng(3)
  y = _smooth_random(rng, (1, 12, 14, 2))
  g = _smooth_random(rng, (1, 12, 14, 2))
  mask = _center(1, 12, 14)
  x1, _ = _blend(y, g, mask)
  x2, _ = _blend(y, g + 0.7, mask)
  np.testing.assert_allclose(np.asarray(x1), np.asarray(x2), atol=1e-5)


def test_all_hole_mask_returns_guide_and_no_hole_returns_y():
  rng = np.random.default_rng(4)
  y = _smooth_random(rng, (2, 8, 8, 3))
  g = _smooth_random(rng, (2, 8, 8, 3))
  mask = np.stack([np.zeros((8, 8, 1)), np.ones((8, 8, 1))]).astype(np.float32)
  x, info = _blend(y, g, mask)
  x = np.asarray(x)
  np.testing.assert_array_equal(x[0], g[0])
  np.testing.assert_array_equal(x[1], y[1])
  assert np.all(np.isfinite(np.asarray(info['residual'])))


def test_vmap_matches_batch_and_broadcast_mask():
  rng = np.random.default_rng(5)
  y = _smooth_random(rng, (3, 12, 12, 2))
  g = _smooth_random(rng, (3, 12, 12, 2))
  mask = _irregular(rng, 3, 12, 12)
  x_batch, info_batch = _blend(y, g, mask)
  x_vmap, info_vmap = jax.jit(jax.vmap(poisson.poisson_blend))(y, g, mask)
  np.testing.assert_allclose(np.asarray(x_batch), np.asarray(x_vmap),
                             atol=1e-6)
  np.testing.assert_array_equal(np.asarray(info_batch['iterations']),
                                np.asarray(info_vmap['iterations']))
  # One mask for the whole batch broadcasts like the per-image copies.
  x_shared, _ = _blend(y, g, mask[:1])
  x_copies, _ = _blend(y, g, np.repeat(mask[:1], 3, axis=0))
  np.testing.assert_array_equal(np.asarray(x_shared), np.asarray(x_copies))


def test_iteration_cap_reports_not_converged():
  rng = np.random.default_rng(6)
  y = _smooth_random(rng, (1, 16, 16, 1))
  g = _smooth_random(rng, (1, 16, 16, 1))
  x, info = _blend(y, g, _center(1, 16, 16), max_iters=2)
  assert int(info['iterations'][0]) == 2
  assert not bool(info['converged'][0])
  assert float(info['residual'][0]) > 1e-6
  assert np.all(np.isfinite(np.asarray(x)))
