"""Poisson blending of G(ẑ) into the known pixels of y (paper eq. 9).

`x = argmin ‖∇x − ∇g‖²` subject to `x = y` on known pixels. Its normal
equations on the 4-neighbour pixel graph are, for every hole pixel p,

    Σ_{q ∈ N(p)} (x_p − x_q) = Σ_{q ∈ N(p)} (g_p − g_q),

where N(p) are p's in-image 4-neighbours: a neighbour q that is known enters
with its fixed value y_q (Dirichlet, moved to the right-hand side) and a
neighbour outside the image is simply left out (Neumann: no gradient is
asked across the image border). The matrix of this system (degree on the
diagonal, −1 between neighbouring hole pixels) is symmetric positive definite
as soon as the image has one known pixel: the pixel grid is connected, so
every connected hole component touches a known pixel.

We solve it with matrix-free, Jacobi-preconditioned conjugate gradient, one
independent system per image and channel, all advanced together in one
`lax.while_loop`. Only y's known pixels and the guide are read: never the
ground truth (y's hole pixels may hold anything, even NaN).
"""
from typing import Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

# The solver works channels-first, (..., C, H, W): with W as the minor axis
# the stencil and reductions vectorize well on CPU (C = 3 minor does not).
_H_AXIS = -2
_W_AXIS = -1
_SPATIAL = (-2, -1)


def _shift(x: jnp.ndarray, step: int, axis: int) -> jnp.ndarray:
  """out[i] = x[i + step] along `axis` (step = +-1), 0 outside the image."""
  n = x.shape[axis]
  zero_shape = list(x.shape)
  zero_shape[axis] = 1
  zero = jnp.zeros(zero_shape, x.dtype)
  if step == 1:
    return jnp.concatenate(
        [jax.lax.slice_in_dim(x, 1, n, axis=axis), zero], axis=axis)
  return jnp.concatenate(
      [zero, jax.lax.slice_in_dim(x, 0, n - 1, axis=axis)], axis=axis)


def _neighbour_sum(x: jnp.ndarray) -> jnp.ndarray:
  """Σ over the in-image 4-neighbours of each pixel (outside ones are 0)."""
  return (_shift(x, -1, _H_AXIS) + _shift(x, 1, _H_AXIS) +
          _shift(x, -1, _W_AXIS) + _shift(x, 1, _W_AXIS))


def _degree(h: int, w: int) -> np.ndarray:
  """(H, W) number of in-image 4-neighbours: 2 at corners, 3 on edges."""
  deg = np.full((h, w), 4.0)
  deg[0, :] -= 1
  deg[-1, :] -= 1
  deg[:, 0] -= 1
  deg[:, -1] -= 1
  return deg


def _dot(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """Per image-and-channel inner product: (..., C, H, W) -> (..., C)."""
  return jnp.sum(a * b, axis=_SPATIAL)


def _safe_div(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  return jnp.where(b != 0, a / jnp.where(b != 0, b, 1), 0)


def poisson_blend(
    y: jnp.ndarray,
    guide: jnp.ndarray,
    mask: jnp.ndarray,
    tol: float = 1e-6,
    max_iters: int = 2000,
) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
  """Blends `guide` into the hole of `y` keeping guide's gradients (eq. 9).

  Args:
    y: (..., H, W, C) damaged image; only its known pixels are read.
    guide: (..., H, W, C) the image whose gradients fill the hole, G(ẑ).
    mask: (..., H, W, 1) float, 1 = known, 0 = hole (read as mask > 0.5).
    tol: stop a system when ‖r‖ <= tol·‖b‖ (relative residual of the
      preconditioner-free equations; absolute when b = 0).
    max_iters: iteration cap. CG needs O(hole side) iterations: about 80
      for a 32x32 hole at tol 1e-6.

  Returns:
    x: (..., H, W, C), equal to y exactly on known pixels. An image with no
      known pixel at all has a singular system whose solutions are the guide
      plus a constant; we return the guide itself (CG starts from the guide,
      where the residual is already 0, and a final `where` makes it exact).
    info: dict of per-image (leading dims of y) arrays: 'iterations' (int32,
      max over channels), 'residual' (final ‖r‖/‖b‖, max over channels) and
      'converged' (bool, all channels reached `tol`).
  """
  y, guide = jnp.broadcast_arrays(y, guide)
  dtype = jnp.result_type(y.dtype, guide.dtype, jnp.float32)
  y_in, guide_in = y.astype(dtype), guide.astype(dtype)
  known_in = jnp.broadcast_to(mask > 0.5, y.shape[:-1] + (1,))

  to_cf = lambda a: jnp.moveaxis(a, -1, -3)  # (..., H, W, C) -> (..., C, H, W)
  y, guide, known = to_cf(y_in), to_cf(guide_in), to_cf(known_in)
  hole = (~known).astype(dtype)
  deg = jnp.asarray(_degree(y.shape[_H_AXIS], y.shape[_W_AXIS]), dtype)
  inv_diag = 1.0 / deg  # Jacobi preconditioner: the diagonal is the degree

  def apply_a(v):
    # The matrix on hole pixels; v is zero on known pixels, so the
    # neighbour sum only sees neighbouring hole pixels.
    return hole * (deg * v - _neighbour_sum(v))

  # b = (Neumann Laplacian of g) + Σ_{known q} y_q, on hole pixels. y is
  # zeroed in the hole first: its hole values are never read.
  y_known = jnp.where(known, y, 0)
  b = hole * (deg * guide - _neighbour_sum(guide) + _neighbour_sum(y_known))
  b_norm = jnp.sqrt(_dot(b, b))
  scale = jnp.where(b_norm > 0, b_norm, 1.0)  # b = 0: absolute tolerance

  def rel_res(r):
    return jnp.sqrt(_dot(r, r)) / scale

  # Starting from the guide makes the all-hole (singular) case exact at
  # iteration 0 and is a good first guess in general.
  x0 = hole * guide
  r0 = b - apply_a(x0)
  z0 = inv_diag * r0
  active0 = rel_res(r0) > tol  # (..., C): one system per image and channel
  state = (x0, r0, z0, _dot(r0, z0), active0,
           jnp.zeros(active0.shape, jnp.int32), jnp.int32(0))

  def cond(state):
    *_, active, _, it = state
    return jnp.any(active) & (it < max_iters)

  def body(state):
    x, r, p, rz, active, iters, it = state
    ap = apply_a(p)
    # Converged systems take zero steps (alpha = 0) and keep p, so they stay
    # frozen while the others go on: per-system stopping in one loop.
    alpha = jnp.where(active, _safe_div(rz, _dot(p, ap)), 0)[..., None, None]
    x = x + alpha * p
    r = r - alpha * ap
    z = inv_diag * r
    rz_new = _dot(r, z)
    beta = _safe_div(rz_new, rz)[..., None, None]
    p = jnp.where(active[..., None, None], z + beta * p, p)
    rz = jnp.where(active, rz_new, rz)
    iters = iters + active.astype(jnp.int32)
    active = active & (rel_res(r) > tol)
    return x, r, p, rz, active, iters, it + 1

  x, r, _, _, active, iters, _ = jax.lax.while_loop(cond, body, state)

  x = jnp.moveaxis(x, -3, -1)
  no_known = ~jnp.any(known_in, axis=(-3, -2, -1))
  x = jnp.where(no_known[..., None, None, None], guide_in, x)
  x = jnp.where(known_in, y_in, x)
  info = {
      'iterations': jnp.max(iters, axis=-1),
      'residual': jnp.max(rel_res(r), axis=-1),
      'converged': ~jnp.any(active, axis=-1),
  }
  return x, info


def harmonic_fill(
    y: jnp.ndarray,
    mask: jnp.ndarray,
    tol: float = 1e-6,
    max_iters: int = 2000,
) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
  """Fills the hole with the harmonic interpolant of its boundary values.

  The Laplace equation (`poisson_blend` with a zero guide): a classical,
  learning-free inpainting baseline. Same arguments and outputs as
  `poisson_blend`; an image with no known pixel comes back as zeros.
  """
  return poisson_blend(y, jnp.zeros_like(y), mask, tol=tol,
                       max_iters=max_iters)
