"""Masked image operators of the completion loss (paper section 3.2).

Everything here is a pure `jnp` function over the last three axes
(H, W, C), so the same code runs on one image (H, W, C) inside `jax.vmap`
and on a batch (N, H, W, C) or any other leading batch shape.

Masks follow the repo convention: float (..., H, W, 1), 1 = known pixel,
0 = hole. They are read as binary (`mask > 0.5`) where a rule needs a yes/no
answer, so a mask that went through interpolation still behaves.
"""
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

_H_AXIS = -3
_W_AXIS = -2


def _check_window(window: int) -> int:
  if window < 1 or window % 2 != 1:
    # An even window has no centre pixel: W(i) would not be centred at i.
    raise ValueError(f'window must be a positive odd integer, got {window}')
  return window // 2


def _box_sum_axis(x: jnp.ndarray, radius: int, axis: int) -> jnp.ndarray:
  """Sum over [i - radius, i + radius] along `axis`; outside pixels count 0."""
  pad = [(0, 0)] * x.ndim
  pad[axis] = (radius, radius)
  xp = jnp.pad(x, pad)
  n = x.shape[axis]
  # A handful of shifted slices (the window is small: 7 for the paper) keeps
  # the op elementwise: exact on 0/1 masks and free of the reduced (TF32)
  # precision a float32 convolution may get on GPUs.
  total = jnp.zeros_like(x)
  for offset in range(2 * radius + 1):
    total = total + jax.lax.slice_in_dim(xp, offset, offset + n, axis=axis)
  return total


def _in_image_count(n: int, radius: int) -> np.ndarray:
  """Number of in-image positions of a 1-D window centred at each index."""
  i = np.arange(n)
  return (np.minimum(i + radius, n - 1) - np.maximum(i - radius, 0) + 1)


def mean_window(x: jnp.ndarray, window: int = 7) -> jnp.ndarray:
  """Mean of `x` over a window x window box centred at each pixel.

  Boxes that cross the image border average only the pixels inside the image
  (sum over in-image pixels / number of in-image pixels), so a constant image
  stays constant up to the border.

  Args:
    x: (..., H, W, C) any values.
    window: odd box side (the paper uses 7).

  Returns:
    (..., H, W, C), same dtype as `x`.
  """
  radius = _check_window(window)
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  h, w = x.shape[_H_AXIS], x.shape[_W_AXIS]
  box = _box_sum_axis(_box_sum_axis(x, radius, _H_AXIS), radius, _W_AXIS)
  # The count is separable and known from static shapes: compute it on host.
  count = np.outer(_in_image_count(h, radius), _in_image_count(w, radius))
  return box / jnp.asarray(count[:, :, None], dtype=x.dtype)


def window_weights(mask: jnp.ndarray, window: int = 7) -> jnp.ndarray:
  """Weights W of the contextual loss, paper eq. 7 (and W1 of eq. 14).

  `W(i) = M(i) * mean_window(1 - M)(i)`: the fraction of hole pixels around a
  known pixel i, so known pixels next to the hole weigh most and hole pixels
  weigh 0. Window pixels outside the image are not counted (see
  `mean_window`).

  Args:
    mask: (..., H, W, 1) float, 1 = known, 0 = hole.
    window: odd window side (the paper fixes 7x7, as Yeh et al.).

  Returns:
    (..., H, W, 1) in [0, 1).
  """
  return mask * mean_window(1.0 - mask, window)


def complement_window_weights(mask: jnp.ndarray,
                              window: int = 7) -> jnp.ndarray:
  """Weights W2 of conditional face completion, paper eq. 15.

  `W2(i) = (1 - M(i)) * (1 - mean_window(M)(i))`: nonzero only on the hole
  (the region taken from the reference image y2), largest far from y1's
  known pixels.

  Args:
    mask: (..., H, W, 1) float, 1 = keep from y1, 0 = take from y2.
    window: odd window side.

  Returns:
    (..., H, W, 1) in [0, 1].
  """
  return (1.0 - mask) * (1.0 - mean_window(mask, window))


def _shift(x: jnp.ndarray, step: int, axis: int) -> jnp.ndarray:
  """out[i] = x[i + step] along `axis`, zero where i + step leaves the image."""
  n = x.shape[axis]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (max(-step, 0), max(step, 0))
  xp = jnp.pad(x, pad)
  start = max(step, 0)
  return jax.lax.slice_in_dim(xp, start, start + n, axis=axis)


def _masked_difference(x: jnp.ndarray, known: jnp.ndarray,
                       axis: int) -> jnp.ndarray:
  """One-axis masked finite difference; see `masked_gradients` for the rule."""
  # Shifting the boolean mask with zero fill makes "outside the image" read
  # as "not known", which is exactly the border rule.
  k_prev = _shift(known, -1, axis)
  k_next = _shift(known, 1, axis)
  x_prev = _shift(x, -1, axis)
  x_next = _shift(x, 1, axis)
  central = k_prev & k_next
  forward = known & k_next
  backward = known & k_prev
  # jnp.where (not multiplication by the mask) keeps NaN/garbage in hole
  # pixels of y from leaking into the differences of known pixels.
  return jnp.where(
      central, (x_next - x_prev) * 0.5,
      jnp.where(forward, x_next - x,
                jnp.where(backward, x - x_prev, jnp.zeros_like(x))))


def masked_gradients(img: jnp.ndarray,
                     mask: jnp.ndarray) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """Finite differences that only read known pixels (paper section 3.2).

  Rule, applied independently along H (for gy) and along W (for gx), at every
  pixel i (known or not) with neighbours i-1 and i+1 along that axis; a
  neighbour outside the image counts as not known:
    1. central  (x[i+1] - x[i-1]) / 2  if M[i-1] = 1 and M[i+1] = 1;
    2. forward   x[i+1] - x[i]         else if M[i] = 1 and M[i+1] = 1;
    3. backward  x[i] - x[i-1]         else if M[i] = 1 and M[i-1] = 1;
    4. 0                               otherwise.
  Case 1 does not read x[i], so it also applies to a hole pixel between two
  known ones; cases 2-3 are the one-sided differences at the edge of the hole
  and at the image border; an isolated known pixel (no known neighbour along
  the axis) gets 0. The contextual loss multiplies by M, so only the values
  at known pixels matter there, but the rule is defined everywhere.

  Apply it with the **same** mask to G(z) and to y so the two gradients use
  the same stencils and are comparable.

  Args:
    img: (..., H, W, C) image, any range.
    mask: (..., H, W, 1) float, 1 = known, 0 = hole; leading dims broadcast
      against `img`.

  Returns:
    (gy, gx): derivatives along H and along W, each shaped like `img`.
  """
  known = jnp.broadcast_to(mask > 0.5, jnp.broadcast_shapes(mask.shape,
                                                            img.shape))
  img = jnp.broadcast_to(img, known.shape)
  gy = _masked_difference(img, known, _H_AXIS)
  gx = _masked_difference(img, known, _W_AXIS)
  return gy, gx
