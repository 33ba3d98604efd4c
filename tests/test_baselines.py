"""jaxinpaint.baselines: the classical fills, against closed forms (a linear
ramp is harmonic and biharmonic, so both fills reproduce it)."""
import sys

import numpy as np
import pytest

from jaxinpaint import errors
from jaxinpaint.data import masks
from jaxinpaint.evaluation import baselines

R = 16


def ramp(n=2):
  """(n, R, R, 3) images that are linear in x and y: harmonic and
  biharmonic, so a fill of any hole must give them back."""
  yy, xx = np.mgrid[:R, :R].astype(np.float32) / (R - 1)
  img = np.stack([xx - 0.5, 0.8 * yy - 0.4, 0.5 * (xx + yy) - 0.5], -1)
  return np.stack([img * (k + 1) / n for k in range(n)]).astype(np.float32)


def damage(images, mask):
  return np.where(mask > 0.5, images, np.float32(0))


def test_classical_fills_reproduce_a_linear_ramp():
  images = ramp()
  mask = masks.make_masks('center', 1, R, R)
  filled, extra = baselines.harmonic(damage(images, mask), mask)
  np.testing.assert_allclose(filled, images, atol=2e-4)
  assert extra['cg_iterations_max'] > 0
  pytest.importorskip('skimage.restoration', reason=baselines.INSTALL_HINT)
  filled, _ = baselines.fill('biharmonic', damage(images, mask), mask)
  np.testing.assert_allclose(filled, images, atol=1e-4)


def test_telea_keeps_known_pixels_and_fills_a_constant():
  pytest.importorskip('cv2', reason=baselines.INSTALL_HINT)
  images = np.full((2, R, R, 3), 0.2, np.float32)
  images[1] = -0.6
  mask = masks.make_masks('center', 1, R, R)
  filled, _ = baselines.telea(damage(images, mask), mask, radius=3)
  # uint8 round trip: 0.2 -> round(1.2 * 127.5) = 153 -> 153 / 127.5 - 1.
  want = np.round((images + 1) * 127.5) / 127.5 - 1
  known = np.broadcast_to(mask > 0.5, images.shape)
  np.testing.assert_allclose(filled[known], want[known], atol=1e-6)
  # In the hole Telea's gradient-weighted average of a constant is that
  # constant, to within the rounding of its uint8 steps (2 levels here).
  np.testing.assert_allclose(filled, want, atol=2.5 / 127.5)
  assert np.abs(filled - want).mean() < 0.5 / 127.5


def test_holes_broadcasts_one_mask():
  mask = masks.make_masks('center', 1, R, R)
  holes = baselines.holes(mask, 3)
  assert holes.shape == (3, R, R) and holes.sum() == 3 * (R // 2) ** 2


def test_fill_dispatches_by_name_and_refuses_others():
  images = ramp()
  mask = masks.make_masks('three_squares', 1, R, R)
  by_name, _ = baselines.fill('harmonic', damage(images, mask), mask)
  direct, _ = baselines.harmonic(damage(images, mask), mask)
  np.testing.assert_array_equal(by_name, direct)
  with pytest.raises(errors.ArgumentError, match="name: unknown fill 'nope'"):
    baselines.fill('nope', images, mask)


def test_unavailable_names_the_missing_package(monkeypatch):
  monkeypatch.setitem(sys.modules, 'cv2', None)  # `import cv2` now fails
  reasons = baselines.unavailable(['harmonic', 'telea'])
  assert list(reasons) == ['telea']
  assert reasons['telea'].startswith('cv2 is not installed (')
  assert reasons['telea'].endswith(baselines.INSTALL_HINT)
