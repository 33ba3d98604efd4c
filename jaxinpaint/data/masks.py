"""Inpainting masks, built on the host with numpy.

Every function returns float32 (N, H, W, 1) with **1 = known pixel, 0 =
hole** (the paper's convention; in mask files white = known, black = hole).
Random masks are deterministic: image i of a call with seed s depends only
on (s, i), so the same image gets the same mask whatever the batch size.
"""
from typing import Tuple

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from jaxinpaint import errors
from jaxinpaint.data import decoding

MASK_KINDS = ('center', 'three_squares', 'random', 'free_form')

# Three squares of side 16 on an aligned 64x64 CelebA face, as
# (row0, col0, side) with rows/cols half-open [row0, row0 + side). The paper
# gives no coordinates; this layout covers the left eye, the right eye and
# the mouth of the usual aligned crop and is fixed for every experiment.
_THREE_SQUARES_64 = (
    (20, 12, 16),  # left eye (image left): rows 20..35, cols 12..27
    (20, 36, 16),  # right eye: rows 20..35, cols 36..51
    (40, 24, 16),  # mouth: rows 40..55, cols 24..39
)


def _check_size(n: int, h: int, w: int) -> None:
  if n < 0 or h < 1 or w < 1:
    raise ValueError(f'need n >= 0 and h, w >= 1, got n={n}, h={h}, w={w}')


def _rng(seed: int, index: int) -> np.random.Generator:
  # Seeding with the pair makes image `index`'s mask independent of how many
  # other masks are drawn with it.
  if seed < 0:
    raise ValueError(f'seed must be >= 0, got {seed}')
  return np.random.default_rng([seed, index])


def _stack(masks, h: int, w: int) -> np.ndarray:
  masks = list(masks)
  if not masks:
    return np.ones((0, h, w, 1), np.float32)
  return np.stack(masks)[..., None].astype(np.float32)


def center_mask(n: int, h: int, w: int) -> np.ndarray:
  """The middle half of each side is a hole (32x32 in 64x64, paper Table 1).

  Hole rows h//4 .. h//4 + h//2 - 1 and columns w//4 .. w//4 + w//2 - 1.

  Returns:
    float32 (n, h, w, 1), 1 = known, 0 = hole.
  """
  _check_size(n, h, w)
  m = np.ones((h, w), np.float32)
  m[h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2] = 0.0
  return np.broadcast_to(m[None, :, :, None], (n, h, w, 1)).copy()


def _scale(v: int, size: int) -> int:
  # Round half up (not Python's round-half-even) so coordinates are obvious.
  return int(np.floor(v * size / 64 + 0.5))


def three_squares_coordinates(h: int, w: int) -> Tuple[Tuple[int, int, int,
                                                             int], ...]:
  """Hole boxes of `three_squares_mask` as (row0, row1, col0, col1), half-open.

  At 64x64: (20, 36, 12, 28), (20, 36, 36, 52), (40, 56, 24, 40). Other
  sizes scale every coordinate by h/64 (rows) and w/64 (columns), rounding
  half up, so 128x128 doubles them exactly.
  """
  return tuple((_scale(r, h), _scale(r + s, h), _scale(c, w), _scale(c + s, w))
               for r, c, s in _THREE_SQUARES_64)


def three_squares_mask(n: int, h: int, w: int) -> np.ndarray:
  """Three square holes over the eyes and the mouth (paper Table 2).

  The paper does not give the layout; we fix squares of side h/4 (16 at
  64x64) at rows 20..35 / cols 12..27 (left eye), rows 20..35 / cols 36..51
  (right eye) and rows 40..55 / cols 24..39 (mouth) of an aligned 64x64
  CelebA face, and scale them with the resolution (see
  `three_squares_coordinates`). The squares do not overlap: 3 * 256 = 768
  hole pixels at 64x64 (18.75% of the image).

  Returns:
    float32 (n, h, w, 1), 1 = known, 0 = hole.
  """
  _check_size(n, h, w)
  m = np.ones((h, w), np.float32)
  for r0, r1, c0, c1 in three_squares_coordinates(h, w):
    m[r0:r1, c0:c1] = 0.0
  return np.broadcast_to(m[None, :, :, None], (n, h, w, 1)).copy()


def random_rectangles(n: int, h: int, w: int, seed: int,
                      indices=None) -> np.ndarray:
  """1 to 3 axis-aligned rectangular holes per image, at random places.

  Each rectangle has height in [h/8, h/2] and width in [w/8, w/2] (at least
  1 pixel) and lies fully inside the image; rectangles may overlap. Image i
  uses `np.random.default_rng([seed, i])`; `indices` (n,), if given, are the
  images' indices i (default: 0 .. n-1), so any rows can be drawn alone.

  Returns:
    float32 (n, h, w, 1), 1 = known, 0 = hole.
  """
  _check_size(n, h, w)

  def one(i):
    rng = _rng(seed, i)
    m = np.ones((h, w), np.float32)
    for _ in range(rng.integers(1, 4)):
      rh = rng.integers(max(h // 8, 1), max(h // 2, 1) + 1)
      rw = rng.integers(max(w // 8, 1), max(w // 2, 1) + 1)
      r0 = rng.integers(0, h - rh + 1)
      c0 = rng.integers(0, w - rw + 1)
      m[r0:r0 + rh, c0:c0 + rw] = 0.0
    return m

  return _stack((one(int(i)) for i in _indices(n, indices)), h, w)


def free_form(n: int, h: int, w: int, seed: int, indices=None) -> np.ndarray:
  """Random brush strokes (free-form holes), drawn with PIL.

  Per image: 1 to 4 strokes; each stroke starts at a random point and makes 2
  to 6 straight segments of length in [s/8, s/3] (s = min(h, w)) with random
  directions, drawn with a round brush of width in [s/16, s/8] (at least 1
  pixel). Image i uses `np.random.default_rng([seed, i])`; `indices` as in
  `random_rectangles`.

  Returns:
    float32 (n, h, w, 1), 1 = known, 0 = hole.
  """
  _check_size(n, h, w)
  s = min(h, w)

  def one(i):
    rng = _rng(seed, i)
    canvas = Image.new('L', (w, h), 255)  # PIL sizes are (width, height)
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(1, 5)):
      width = int(rng.integers(max(s // 16, 1), max(s // 8, 1) + 1))
      y, x = rng.uniform(0, h), rng.uniform(0, w)
      points = [(x, y)]
      for _ in range(rng.integers(2, 7)):
        angle = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(s / 8, s / 3)
        x = float(np.clip(x + length * np.cos(angle), 0, w - 1))
        y = float(np.clip(y + length * np.sin(angle), 0, h - 1))
        points.append((x, y))
      draw.line(points, fill=0, width=width, joint='curve')
      # Round caps: PIL lines end square, a disc at each vertex rounds them.
      r = width / 2
      for px, py in points:
        draw.ellipse((px - r, py - r, px + r, py + r), fill=0)
    return (np.asarray(canvas) >= 128).astype(np.float32)

  return _stack((one(int(i)) for i in _indices(n, indices)), h, w)


def _to_unit_grey(img: Image.Image, what: str) -> np.ndarray:
  """Greyscale values in [0, 1] from any PIL mode."""
  unit = decoding.unit_values(img, what)
  if unit is not None:
    # 16-bit or float greyscale, by the rule images follow (convert('L')
    # would clip, not rescale).
    return unit
  if 'A' in img.mode or 'transparency' in img.info:
    rgba = np.asarray(img.convert('RGBA'))
    if (rgba[..., :3] == 255).all():
      # White everywhere: the mask is drawn in the alpha channel (a
      # transparent hole on a white layer).
      return rgba[..., 3].astype(np.float64) / 255.0
  # '1', 'L', 'P', 'RGB', 'RGBA', 'LA', 'CMYK', ...: PIL's luminance.
  return np.asarray(img.convert('L'), dtype=np.float64) / 255.0


def load_mask(path: str, h: int, w: int) -> np.ndarray:
  """Reads a mask image file: white = known, black = hole.

  Any image mode is read as greyscale (colour via luminance, alpha ignored),
  except an image with alpha whose colour is white everywhere: its alpha
  is the mask (opaque = known, transparent = hole). Grey values >= 0.5 of
  full scale are known, below are holes; 16-bit and float files are scaled
  as images are (`decoding.unit_values`: by 65535, float in [0, 1]).

  Args:
    path: image file (PNG, BMP, ...).
    h, w: the size the images have; the file must match it exactly (a mask
      is never resized silently).

  Returns:
    float32 (1, h, w, 1), 1 = known, 0 = hole; it broadcasts over a batch.

  Raises:
    ValueError: the file cannot be read as an image, or has another size;
      errors.ImageTooLargeError over Pillow's decompression-bomb limit,
      errors.ImageRangeError for 16-bit or float values out of range.
  """
  what = f'mask file {path!r}'
  try:
    # The size is checked from the header, before the pixels are decoded.
    with decoding.open_image(path, what) as img:
      size = decoding.upright_size(img)
      if size != (w, h):
        raise errors.InputError(
            f'{what} is {size[0]}x{size[1]} (width x height) but the images '
            f'are {w}x{h}; give a mask of the same size')
      img = decoding.upright(img)
      img.load()
      grey = _to_unit_grey(img, what)
  except errors.InputError:
    raise  # names the file already
  except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
    raise ValueError(f'cannot read {what} as an image: {e}') from e
  return (grey >= 0.5).astype(np.float32)[None, :, :, None]


def _indices(n: int, indices) -> np.ndarray:
  if indices is None:
    return np.arange(n)
  indices = np.asarray(indices)
  if indices.shape != (n,):
    raise ValueError(f'indices must have shape ({n},), got {indices.shape}')
  return indices


def make_masks(kind: str, n: int, h: int, w: int, seed: int = 0,
               indices=None) -> np.ndarray:
  """Masks by name: one of MASK_KINDS.

  'center' and 'three_squares' are fixed layouts (`seed` is unused); 'random'
  (`random_rectangles`) and 'free_form' are drawn per (seed, image index),
  the indices being `indices` (n,) if given, else 0 .. n-1.

  Returns:
    float32 (n, h, w, 1), 1 = known, 0 = hole.

  Raises:
    ValueError: unknown kind (the message lists the valid ones).
  """
  if kind == 'center':
    return center_mask(n, h, w)
  if kind == 'three_squares':
    return three_squares_mask(n, h, w)
  if kind == 'random':
    return random_rectangles(n, h, w, seed, indices)
  if kind == 'free_form':
    return free_form(n, h, w, seed, indices)
  raise ValueError(f'unknown mask kind {kind!r}; valid kinds: '
                   f'{", ".join(MASK_KINDS)}')
