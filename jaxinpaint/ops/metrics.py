"""Image quality metrics of the paper's tables (section 4.2).

All metrics take images in [0, 255] (float; see `to_uint8_range`) shaped
(..., H, W, C) and return one value per image (the leading dims), so a batch
(N, H, W, C) gives (N,). They are pure `jnp` functions, fine under `jit` and
`vmap`.

The tables' PSNR is not the mean of per-image PSNRs: it is
`10·log10(255² / mean MSE)` over the test set (`psnr_of_mean_mse`), which
reproduces every MSE/PSNR pair of the paper's Tables 1 and 2. We report both.
"""
from typing import Dict

import dm_pix as pix
import jax.numpy as jnp
import numpy as np

MAX_VALUE = 255.0
# PSNR of identical images (MSE 0) is capped here instead of being inf, so
# that means and JSON summaries stay finite. Any nonzero error between images
# of uint8 values is >= 1/(H·W·C), i.e. below the cap up to ~150k values per
# image (e.g. 64x64x3 images cannot exceed 89 dB).
PSNR_CAP_DB = 100.0

_SPATIAL_CHANNEL = (-3, -2, -1)


def to_uint8_range(x: jnp.ndarray) -> jnp.ndarray:
  """Maps library images in [-1, 1] to the values a saved uint8 PNG holds.

  `round((clip(x, -1, 1) + 1) · 127.5)` with round-half-to-even (as
  `jnp.round`/`np.round`), returned as float in {0, 1, ..., 255}. Writers of
  PNG files should use the same formula (or `to_uint8`) so the metrics
  describe the files on disk.

  Args:
    x: (...) float image(s) in [-1, 1]; values outside are clipped.

  Returns:
    Same shape, float32 integers in [0, 255].
  """
  x = jnp.clip(jnp.asarray(x, jnp.float32), -1.0, 1.0)
  return jnp.round((x + 1.0) * 127.5)


def to_uint8(x) -> np.ndarray:
  """`to_uint8_range` as a host uint8 array, for writing image files."""
  return np.asarray(to_uint8_range(x)).astype(np.uint8)


def _psnr_from_mse(mse, xp=jnp):
  # mse = 0 -> log10(inf) = inf -> capped; no division warning path because
  # the ratio is formed with a where.
  safe = xp.where(mse > 0, mse, 1.0)
  db = 10.0 * xp.log10(MAX_VALUE**2 / safe)
  return xp.where(mse > 0, xp.minimum(db, PSNR_CAP_DB), PSNR_CAP_DB)


def mse(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """Per-image mean squared error over pixels and channels.

  Args:
    a, b: (..., H, W, C) in [0, 255].

  Returns:
    (...,) float32.
  """
  d = jnp.asarray(a, jnp.float32) - jnp.asarray(b, jnp.float32)
  return jnp.mean(d * d, axis=_SPATIAL_CHANNEL)


def hole_mse(a: jnp.ndarray, b: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  """Per-image MSE over hole pixels only (mask < 0.5) and channels.

  Args:
    a, b: (..., H, W, C) in [0, 255].
    mask: (..., H, W, 1), 1 = known, 0 = hole; broadcasts against a.

  Returns:
    (...,) float32; 0 for an image without hole pixels (not NaN).
  """
  d = jnp.asarray(a, jnp.float32) - jnp.asarray(b, jnp.float32)
  hole = jnp.broadcast_to(jnp.asarray(mask) < 0.5, d.shape[:-1] + (1,))
  hole = hole.astype(jnp.float32)
  total = jnp.sum(hole * d * d, axis=_SPATIAL_CHANNEL)
  count = jnp.sum(hole, axis=_SPATIAL_CHANNEL) * d.shape[-1]
  return jnp.where(count > 0, total / jnp.maximum(count, 1.0), 0.0)


def psnr(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """Per-image PSNR in dB, `10·log10(255² / mse)`, capped at PSNR_CAP_DB.

  Identical images (MSE 0) give exactly PSNR_CAP_DB (100 dB), not inf.

  Args:
    a, b: (..., H, W, C) in [0, 255].

  Returns:
    (...,) float32.
  """
  return _psnr_from_mse(mse(a, b))


def psnr_of_mean_mse(mses: jnp.ndarray) -> jnp.ndarray:
  """The tables' PSNR: `10·log10(255² / mean(mses))` over a set of images.

  Args:
    mses: (N,) per-image MSEs on [0, 255] images.

  Returns:
    Scalar, capped at PSNR_CAP_DB like `psnr`.
  """
  return _psnr_from_mse(jnp.mean(jnp.asarray(mses, jnp.float32)))


def ssim(a: jnp.ndarray,
         b: jnp.ndarray,
         filter_size: int = 11,
         sigma: float = 1.5,
         k1: float = 0.01,
         k2: float = 0.03) -> jnp.ndarray:
  """Per-image SSIM (Wang et al. 2004), averaged over channels and positions.

  `dm_pix.ssim`: Gaussian window of 11 taps, σ = 1.5, population
  (co)variances, data range 255, the SSIM map kept only where the whole
  window lies inside the image ('valid'), which is what
  `skimage.metrics.structural_similarity(a, b, gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)`
  averages (it filters with reflect padding, then crops the 5-pixel border;
  tests/test_metrics.py checks the two agree). Its filter runs at the
  highest precision, so no TF32 convolution on GPUs changes the result.

  Args:
    a, b: (..., H, W, C) in [0, 255], H and W >= filter_size.

  Returns:
    (...,) float32 in [-1, 1].
  """
  if filter_size % 2 != 1:
    raise ValueError(f'filter_size must be odd, got {filter_size}')
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  h, w = a.shape[-3], a.shape[-2]
  if h < filter_size or w < filter_size:
    raise ValueError(
        f'SSIM needs images of at least {filter_size}x{filter_size}, got '
        f'{h}x{w}')
  return pix.ssim(a, b, max_val=MAX_VALUE, filter_size=filter_size,
                  filter_sigma=sigma, k1=k1, k2=k2)


def summarize(per_image_mse, per_image_psnr, per_image_ssim,
              per_image_hole_mse) -> Dict[str, float]:
  """Set-level numbers of a run, as plain Python values (JSON-able).

  Args:
    per_image_mse, per_image_psnr, per_image_ssim, per_image_hole_mse: (N,)
      arrays (numpy, jax or lists) from `mse`, `psnr`, `ssim`, `hole_mse`.

  Returns:
    {'mse': mean MSE, 'psnr': 10·log10(255²/mean MSE) (the paper's table
    PSNR), 'psnr_mean': mean of per-image PSNRs, 'ssim': mean SSIM,
    'hole_mse': mean hole-only MSE, 'n_images': N}. Means are computed in
    float64 on the host.
  """
  m = np.asarray(per_image_mse, np.float64).reshape(-1)
  p = np.asarray(per_image_psnr, np.float64).reshape(-1)
  s = np.asarray(per_image_ssim, np.float64).reshape(-1)
  hm = np.asarray(per_image_hole_mse, np.float64).reshape(-1)
  if not len(m) == len(p) == len(s) == len(hm):
    raise ValueError(f'per-image arrays differ in length: mse {len(m)}, psnr '
                     f'{len(p)}, ssim {len(s)}, hole_mse {len(hm)}')
  if len(m) == 0:
    raise ValueError('summarize needs at least one image')
  mean_mse = float(m.mean())
  return {
      'mse': mean_mse,
      'psnr': float(_psnr_from_mse(np.float64(mean_mse), xp=np)),
      'psnr_mean': float(p.mean()),
      'ssim': float(s.mean()),
      'hole_mse': float(hm.mean()),
      'n_images': int(len(m)),
  }
