"""Tests for jaxinpaint.metrics against numpy and skimage.metrics."""
import json

import jax
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from jaxinpaint.ops import metrics

# Jitted once per shape: eager mode would compile every small op separately.
_ssim = jax.jit(metrics.ssim)


def _random_pair(rng, shape):
  a = rng.integers(0, 256, shape).astype(np.float32)
  b = np.clip(a + rng.normal(0, 40, shape), 0, 255).round().astype(np.float32)
  return a, b


def _smooth_pair(rng, shape):
  # Smooth gradients with a small perturbation: low local variance is where
  # float32 cancellation in SSIM would show.
  n, h, w, c = shape
  i, j = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w),
                     indexing='ij')
  base = np.stack([
      80 + 100 * np.sin(2 * i + k) * np.cos(3 * j - k) for k in range(c)
  ], axis=-1)
  a = np.broadcast_to(base, shape) + rng.normal(0, 0.5, shape)
  b = a + 3 * np.sin(5 * i)[..., None] + rng.normal(0, 5.0, shape)
  return (np.clip(a, 0, 255).astype(np.float32),
          np.clip(b, 0, 255).astype(np.float32))


def _skimage_ssim(a, b):
  return structural_similarity(
      a.astype(np.float64), b.astype(np.float64), gaussian_weights=True,
      sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)


@pytest.mark.parametrize('pair', [_random_pair, _smooth_pair])
def test_ssim_matches_skimage(pair):
  rng = np.random.default_rng(0)
  a, b = pair(rng, (3, 32, 40, 3))
  ours = np.asarray(_ssim(a, b))
  ref = np.array([_skimage_ssim(a[n], b[n]) for n in range(3)])
  assert ours.shape == (3,)
  np.testing.assert_allclose(ours, ref, atol=1e-4)
  # Single channel and a single image (vmap-style input) agree too.
  np.testing.assert_allclose(
      float(_ssim(a[0, ..., :1], b[0, ..., :1])),
      _skimage_ssim(a[0, ..., :1], b[0, ..., :1]), atol=1e-4)


def test_ssim_identical_is_one_and_vmap_matches():
  rng = np.random.default_rng(1)
  a, b = _random_pair(rng, (4, 16, 16, 3))
  np.testing.assert_allclose(np.asarray(_ssim(a, a)), 1.0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(metrics.ssim))(a, b)),
                             np.asarray(_ssim(a, b)), atol=1e-6)
  with pytest.raises(ValueError, match='11x11'):
    metrics.ssim(a[:, :8], b[:, :8])


@pytest.mark.parametrize('pair', [_random_pair, _smooth_pair])
def test_mse_and_psnr_match_numpy_and_skimage(pair):
  rng = np.random.default_rng(2)
  a, b = pair(rng, (3, 24, 20, 3))
  ref_mse = ((a.astype(np.float64) - b)**2).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(np.asarray(metrics.mse(a, b)), ref_mse,
                             rtol=1e-5)
  ref_psnr = [peak_signal_noise_ratio(a[n].astype(np.float64),
                                      b[n].astype(np.float64), data_range=255)
              for n in range(3)]
  np.testing.assert_allclose(np.asarray(metrics.psnr(a, b)), ref_psnr,
                             atol=1e-4)


def test_psnr_of_identical_images_is_capped():
  a = np.full((2, 4, 4, 3), 7.0, np.float32)
  b = a.copy()
  b[1, 0, 0, 0] = 8.0  # MSE 1/48 -> 10·log10(255²·48) = 64.96 dB
  np.testing.assert_allclose(np.asarray(metrics.psnr(a, b)),
                             [100.0, 10 * np.log10(255**2 * 48)], rtol=1e-6)
  assert float(metrics.psnr_of_mean_mse(np.zeros(3))) == 100.0


def test_hole_mse():
  rng = np.random.default_rng(3)
  a, b = _random_pair(rng, (3, 8, 9, 2))
  mask = np.ones((3, 8, 9, 1), np.float32)
  mask[0, 2:5, 3:7] = 0
  mask[1] = 0  # all hole: equals the whole-image MSE
  # image 2: no hole -> 0, not NaN
  got = np.asarray(metrics.hole_mse(a, b, mask))
  d2 = (a.astype(np.float64) - b)**2
  np.testing.assert_allclose(got[0], d2[0, 2:5, 3:7].mean(), rtol=1e-5)
  np.testing.assert_allclose(got[1], d2[1].mean(), rtol=1e-5)
  assert got[2] == 0.0


def test_psnr_of_mean_mse_reproduces_paper_tables():
  # (MSE, PSNR) pairs from the paper's Tables 1 and 2 (CelebA and SVHN).
  pairs = [(872.8672, 18.7213), (785.2562, 19.1807), (1535.8693, 16.2673),
           (622.9391, 20.1863), (622.1092, 20.1921), (321.3023, 23.0617),
           (154.5582, 26.2399)]
  for m, p in pairs:
    np.testing.assert_allclose(float(metrics.psnr_of_mean_mse([m])), p,
                               atol=1e-3)
  # The set PSNR is of the mean MSE, not the mean of per-image PSNRs.
  got = float(metrics.psnr_of_mean_mse(np.array([100.0, 1000.0])))
  np.testing.assert_allclose(got, 10 * np.log10(255**2 / 550.0), rtol=1e-6)


def test_to_uint8_range_matches_png_roundtrip():
  x = np.array([-1.5, -1.0, -0.5, 0.0, 0.3, 1.0, 2.0], np.float32)
  got = np.asarray(metrics.to_uint8_range(x))
  # (x+1)·127.5 = [0, 0, 63.75, 127.5, 165.75, 255, 255], rounded half-even.
  np.testing.assert_array_equal(got, [0, 0, 64, 128, 166, 255, 255])
  assert metrics.to_uint8(x).dtype == np.uint8
  np.testing.assert_array_equal(metrics.to_uint8(x), got.astype(np.uint8))


def test_summarize_is_json_able():
  rng = np.random.default_rng(4)
  a, b = _random_pair(rng, (4, 16, 16, 3))
  mask = np.ones((4, 16, 16, 1), np.float32)
  mask[:, 4:12, 4:12] = 0
  per_mse = metrics.mse(a, b)
  s = metrics.summarize(per_mse, metrics.psnr(a, b), _ssim(a, b),
                        metrics.hole_mse(a, b, mask))
  assert set(s) == {'mse', 'psnr', 'psnr_mean', 'ssim', 'hole_mse',
                    'n_images'}
  assert s['n_images'] == 4 and isinstance(s['n_images'], int)
  mses = np.asarray(per_mse, np.float64)
  np.testing.assert_allclose(s['mse'], mses.mean(), rtol=1e-12)
  np.testing.assert_allclose(s['psnr'], 10 * np.log10(255**2 / mses.mean()),
                             rtol=1e-12)
  np.testing.assert_allclose(
      s['psnr_mean'], np.mean(10 * np.log10(255**2 / mses)), rtol=1e-5)
  json.dumps(s, allow_nan=False)
  with pytest.raises(ValueError, match='length'):
    metrics.summarize([1.0], [1.0, 2.0], [1.0], [1.0])
