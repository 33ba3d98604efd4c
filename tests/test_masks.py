"""Tests for jaxinpaint.masks."""
import numpy as np
import pytest
from PIL import Image

from jaxinpaint import errors
from jaxinpaint.data import masks


def _hole_box(m):
  """(row0, row1, col0, col1) half-open bounding box of the hole of (H, W)."""
  rows, cols = np.nonzero(m == 0)
  return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def test_center_mask_64_and_32():
  m = masks.center_mask(2, 64, 64)
  assert m.shape == (2, 64, 64, 1) and m.dtype == np.float32
  assert set(np.unique(m)) == {0.0, 1.0}
  assert _hole_box(m[0, ..., 0]) == (16, 48, 16, 48)
  assert (m == 0).sum() == 2 * 32 * 32  # the box is completely a hole
  m32 = masks.center_mask(1, 32, 32)
  assert _hole_box(m32[0, ..., 0]) == (8, 24, 8, 24)
  assert (m32 == 0).sum() == 16 * 16
  # Non-square: rows and columns follow their own side.
  m_rect = masks.center_mask(1, 32, 64)[0, ..., 0]
  assert _hole_box(m_rect) == (8, 24, 16, 48)
  np.testing.assert_array_equal(m[0], m[1])


def test_three_squares_64_layout():
  m = masks.three_squares_mask(1, 64, 64)[0, ..., 0]
  expected = np.ones((64, 64), np.float32)
  expected[20:36, 12:28] = 0  # left eye
  expected[20:36, 36:52] = 0  # right eye
  expected[40:56, 24:40] = 0  # mouth
  np.testing.assert_array_equal(m, expected)
  assert (m == 0).sum() == 768
  assert masks.three_squares_coordinates(64, 64) == (
      (20, 36, 12, 28), (20, 36, 36, 52), (40, 56, 24, 40))


def test_three_squares_scale_with_resolution():
  assert masks.three_squares_coordinates(128, 128) == (
      (40, 72, 24, 56), (40, 72, 72, 104), (80, 112, 48, 80))
  assert masks.three_squares_coordinates(32, 32) == (
      (10, 18, 6, 14), (10, 18, 18, 26), (20, 28, 12, 20))
  m64 = masks.three_squares_mask(1, 64, 64)[0, ..., 0]
  m128 = masks.three_squares_mask(1, 128, 128)[0, ..., 0]
  # 128x128 is the 64x64 layout with every pixel doubled.
  np.testing.assert_array_equal(m128, np.kron(m64, np.ones((2, 2))))
  # The hole keeps the same fraction of the image.
  m32 = masks.three_squares_mask(1, 32, 32)[0, ..., 0]
  assert (m32 == 0).mean() == (m64 == 0).mean() == 768 / 4096


@pytest.mark.parametrize('fn', [masks.random_rectangles, masks.free_form])
def test_random_masks_depend_only_on_seed_and_index(fn):
  a = fn(5, 32, 40, seed=7)
  b = fn(3, 32, 40, seed=7)
  c = fn(5, 32, 40, seed=8)
  assert a.shape == (5, 32, 40, 1) and a.dtype == np.float32
  assert set(np.unique(a)) <= {0.0, 1.0}
  np.testing.assert_array_equal(a[:3], b)  # batch size does not matter
  np.testing.assert_array_equal(a, fn(5, 32, 40, seed=7))  # reproducible
  assert not np.array_equal(a, c)  # the seed does
  assert not np.array_equal(a[0], a[1])  # images differ
  for m in a:
    assert 0 < (m == 0).sum() < m.size  # each has a hole and known pixels


def test_random_rectangles_are_unions_of_bounded_rectangles():
  m = masks.random_rectangles(50, 64, 64, seed=0)
  hole_frac = (m == 0).mean(axis=(1, 2, 3))
  # At least one rectangle of >= 8x8, at most three of <= 32x32.
  assert hole_frac.min() >= 64 / 4096
  assert hole_frac.max() <= 3 * 1024 / 4096


def test_make_masks_dispatch_and_errors():
  np.testing.assert_array_equal(masks.make_masks('center', 2, 16, 16),
                                masks.center_mask(2, 16, 16))
  np.testing.assert_array_equal(masks.make_masks('three_squares', 1, 64, 64),
                                masks.three_squares_mask(1, 64, 64))
  np.testing.assert_array_equal(masks.make_masks('random', 2, 16, 16, seed=3),
                                masks.random_rectangles(2, 16, 16, 3))
  np.testing.assert_array_equal(
      masks.make_masks('free_form', 2, 16, 16, seed=3),
      masks.free_form(2, 16, 16, 3))
  with pytest.raises(ValueError) as e:
    masks.make_masks('circle', 1, 8, 8)
  for kind in ('center', 'three_squares', 'random', 'free_form', 'circle'):
    assert kind in str(e.value)


def test_load_mask_threshold_and_modes(tmp_path):
  grey = np.array([[0, 127, 128, 255]], np.uint8)  # 127/255 < 0.5 <= 128/255
  path = tmp_path / 'm.png'
  Image.fromarray(grey, 'L').save(path)
  m = masks.load_mask(str(path), 1, 4)
  assert m.shape == (1, 1, 4, 1) and m.dtype == np.float32
  np.testing.assert_array_equal(m[0, 0, :, 0], [0, 0, 1, 1])

  # RGB: white/black pixels, read through luminance.
  rgb = np.zeros((2, 3, 3), np.uint8)
  rgb[0] = 255
  rgb[1, 2] = 255
  Image.fromarray(rgb, 'RGB').save(tmp_path / 'rgb.png')
  m = masks.load_mask(str(tmp_path / 'rgb.png'), 2, 3)
  np.testing.assert_array_equal(m[0, ..., 0], [[1, 1, 1], [0, 0, 1]])

  # 1-bit image.
  Image.fromarray(np.array([[True, False]])).save(tmp_path / 'b.png')
  m = masks.load_mask(str(tmp_path / 'b.png'), 1, 2)
  np.testing.assert_array_equal(m[0, 0, :, 0], [1, 0])

  # 16-bit greyscale: threshold at half of 65535, not at 128.
  g16 = np.array([[1000, 40000]], np.uint16)
  Image.fromarray(g16).save(tmp_path / 'g16.png')
  m = masks.load_mask(str(tmp_path / 'g16.png'), 1, 2)
  np.testing.assert_array_equal(m[0, 0, :, 0], [0, 1])


def test_load_mask_wrong_size_names_file_and_sizes(tmp_path):
  path = tmp_path / 'small.png'
  Image.fromarray(np.full((20, 30), 255, np.uint8)).save(path)
  with pytest.raises(ValueError) as e:
    masks.load_mask(str(path), 64, 64)
  msg = str(e.value)
  assert 'small.png' in msg and '30x20' in msg and '64x64' in msg


def test_load_mask_unreadable_names_file(tmp_path):
  path = tmp_path / 'broken.png'
  path.write_bytes(b'not an image at all')
  with pytest.raises(ValueError, match='broken.png'):
    masks.load_mask(str(path), 8, 8)
  with pytest.raises(ValueError, match='missing.png'):
    masks.load_mask(str(tmp_path / 'missing.png'), 8, 8)


@pytest.mark.parametrize('side', [12, 15])  # Pillow: a warning, an error
def test_load_mask_over_the_bomb_limit_is_one_line_and_no_warning(
    tmp_path, monkeypatch, recwarn, side):
  # 100 pixels is Pillow's limit here: 12x12 is over it (Pillow warns and
  # decodes), 15x15 over twice it (Pillow raises DecompressionBombError).
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)
  path = tmp_path / 'big.png'
  Image.new('L', (side, side), 255).save(path)
  with pytest.raises(errors.ImageTooLargeError) as e:
    masks.load_mask(str(path), 8, 8)
  message = str(e.value)
  assert len(message.splitlines()) == 1, message
  assert 'big.png' in message and f'{side * side:,} pixels' in message
  assert 'limit of 100 pixels' in message and 'resize it' in message
  assert isinstance(e.value, ValueError)  # what load_mask documents
  assert not [w for w in recwarn
              if issubclass(w.category, Image.DecompressionBombWarning)]
