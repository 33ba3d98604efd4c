"""Classical inpainting: fills that need no model (the tables' baselines).

  harmonic     the Laplace equation with a zero guide (`poisson.harmonic_fill`)
  telea        OpenCV's Telea inpainting       (pip install -e .[baselines])
  biharmonic   scikit-image's biharmonic       (pip install -e .[baselines])

Each maps damaged images y (N, R, R, 3) in [-1, 1] and a mask (1 or N, R,
R, 1), 1 = known, to (the filled images (N, R, R, 3) float32 in [-1, 1], a
dict of numbers about the run). OpenCV and scikit-image are optional
dependencies, imported when their fill runs; `unavailable` tells which
fills cannot run, before any does.
"""
import importlib

import numpy as np

from jaxinpaint import errors
from jaxinpaint.ops import metrics, poisson

FILLS = ('harmonic', 'telea', 'biharmonic')
INSTALL_HINT = 'pip install -e .[baselines]'
# The optional module each fill imports.
_NEEDS = {'telea': 'cv2', 'biharmonic': 'skimage.restoration'}


def unavailable(fills) -> dict:
  """{fill: why} for each of `fills` whose optional package does not
  import."""
  reasons = {}
  for fill_name in fills:
    if fill_name not in _NEEDS:
      continue
    try:
      importlib.import_module(_NEEDS[fill_name])
    except ImportError as e:
      package = _NEEDS[fill_name].split('.')[0]
      reasons[fill_name] = f'{package} is not installed ({e}); {INSTALL_HINT}'
  return reasons


def fill(name: str, y, mask, *, telea_radius: int = 3):
  """The fill `name` (one of FILLS) of damaged images y."""
  if name == 'harmonic':
    return harmonic(y, mask)
  if name == 'telea':
    return telea(y, mask, telea_radius)
  if name == 'biharmonic':
    return biharmonic(y, mask)
  raise errors.ArgumentError(
      'name', f'unknown fill {name!r}; valid: {", ".join(FILLS)}')


def holes(mask, n: int) -> np.ndarray:
  """(1 or N, R, R, 1) mask -> (N, R, R) bool, True = hole."""
  return np.broadcast_to(np.asarray(mask)[..., 0] < 0.5,
                         (n,) + mask.shape[1:3])


def harmonic(y, mask):
  """`poisson.harmonic_fill` of all images at once."""
  filled, info = poisson.harmonic_fill(y, mask)
  return np.asarray(filled, np.float32), {
      'cg_iterations_max': int(np.max(info['iterations']))}


def telea(y, mask, radius: int = 3):
  """OpenCV's Telea inpainting of each image, on its uint8 values;
  `radius` is cv2.inpaint's inpaintRadius."""
  import cv2  # pylint: disable=g-import-not-at-top
  src = metrics.to_uint8(y)
  hole = holes(mask, len(y)).astype(np.uint8) * 255
  out = np.stack([cv2.inpaint(np.ascontiguousarray(s), np.ascontiguousarray(h),
                              radius, cv2.INPAINT_TELEA)
                  for s, h in zip(src, hole)])
  return out.astype(np.float32) / 127.5 - 1.0, {}


def biharmonic(y, mask):
  """scikit-image's biharmonic inpainting of each image, in float64."""
  # pylint: disable-next=g-import-not-at-top
  from skimage.restoration import inpaint_biharmonic
  hole = holes(mask, len(y))
  out = np.stack([inpaint_biharmonic(np.array(img, np.float64), np.array(h),
                                     channel_axis=-1)
                  for img, h in zip(y, hole)])
  return np.clip(out, -1, 1).astype(np.float32), {}
