"""Images to look at: uint8 conversion, PNG files and image grids."""
import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxinpaint import atomic
from jaxinpaint.ops import metrics

# A grid of small images is upscaled (nearest neighbour: every model pixel
# stays a visible square, nothing is invented) until each cell is at least
# this many pixels on its short side: 64-pixel faces are hard to judge at
# their own size on a screen.
MIN_CELL = 128
LABEL_HEIGHT = 20  # the strip above the first row that names the columns
PAD = 2  # between the cells of one image
GAP = 8  # between images (blocks), so each image's cells read as a group


def make_grid(images, ncol: int | None = None, pad: int = 2):
  """(N, H, W, 3) in [-1, 1] → one uint8 image, ncol images a row."""
  images = metrics.to_uint8(images)  # the rounding the metrics assume
  n, h, w, c = images.shape
  ncol = ncol or int(math.ceil(math.sqrt(n)))
  nrow = int(math.ceil(n / ncol))
  grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255,
                 np.uint8)
  for i, image in enumerate(images):
    r, k = divmod(i, ncol)
    y, x = pad + r * (h + pad), pad + k * (w + pad)
    grid[y:y + h, x:x + w] = image
  return grid


def upscale_factor(side: int, min_cell: int = MIN_CELL) -> int:
  """The smallest integer factor that makes `side` >= min_cell (1 if it
  already is)."""
  return max(1, -(-min_cell // side))


def blocks_per_row(n: int, k: int) -> int:
  """How many images (blocks of k square cells side by side) a row of the
  grid holds so that the whole grid is closest to square: b minimizing
  |log(b·k / ceil(n / b))|, the smaller b on a tie."""
  if n < 1 or k < 1:
    raise ValueError(f'need n >= 1 images and k >= 1 columns, got n={n}, '
                     f'k={k}')
  aspect = lambda b: abs(math.log(b * k / math.ceil(n / b)))
  return min(range(1, n + 1), key=lambda b: (aspect(b), b))


@dataclasses.dataclass(frozen=True)
class BlockLayout:
  """Where each cell of a labelled block grid goes.

  n images, each a block of k cells (its columns: input, G(z), ...) of
  cell_h x cell_w pixels; `per_row` blocks a row; a label strip on top.
  """
  n: int
  k: int
  cell_h: int
  cell_w: int
  per_row: int
  pad: int = PAD
  gap: int = GAP
  label_height: int = LABEL_HEIGHT

  @property
  def block_width(self) -> int:
    return self.k * self.cell_w + (self.k - 1) * self.pad

  @property
  def rows(self) -> int:
    return -(-self.n // self.per_row)

  @property
  def shape(self):
    """(height, width) of the whole grid."""
    return (self.label_height + self.gap + self.rows * (self.cell_h + self.gap),
            self.gap + self.per_row * (self.block_width + self.gap))

  def origin(self, i: int, j: int):
    """(y, x) of the top-left pixel of image i's column j."""
    r, c = divmod(i, self.per_row)
    return (self.label_height + self.gap + r * (self.cell_h + self.gap),
            self.gap + c * (self.block_width + self.gap)
            + j * (self.cell_w + self.pad))


def _label_font():
  try:  # a scalable font (Pillow >= 10.1 with FreeType)
    return ImageFont.load_default(size=13)
  except (TypeError, OSError, ImportError):
    return ImageFont.load_default()


def block_grid(columns, labels=None, min_cell: int = MIN_CELL):
  """Images side by side in blocks, blocks laid out near-square.

  columns: list of k arrays (N, H, W, 3) in [-1, 1], e.g. [masked, G(z),
    blended]; block i shows image i of every column, left to right.
  labels: k column names written once above the first row of blocks (over
    each block column), or None.
  Small images are upscaled (nearest) by `upscale_factor(H)`.

  Returns (uint8 (height, width, 3) image, its `BlockLayout`).
  """
  stacked = metrics.to_uint8(np.stack([np.asarray(c) for c in columns], 1))
  n, k, h, w, _ = stacked.shape
  if labels is not None and len(labels) != k:
    raise ValueError(f'{len(labels)} labels for {k} columns')
  f = upscale_factor(min(h, w), min_cell)
  layout = BlockLayout(n=n, k=k, cell_h=h * f, cell_w=w * f,
                       per_row=blocks_per_row(n, k))
  grid = np.full(layout.shape + (3,), 255, np.uint8)
  for i in range(n):
    for j in range(k):
      y, x = layout.origin(i, j)
      grid[y:y + h * f, x:x + w * f] = stacked[i, j].repeat(f, 0).repeat(f, 1)
  if labels is not None:
    image = Image.fromarray(grid)
    draw, font = ImageDraw.Draw(image), _label_font()
    for c in range(min(layout.per_row, n)):
      for j, label in enumerate(labels):
        _, x = layout.origin(c, j)
        draw.text((x + 2, 3), label, fill=(0, 0, 0), font=font)
    grid = np.asarray(image)
  return grid, layout


def save_png(path, image_uint8):
  """Writes atomically: a crash never leaves a half-written PNG, and a
  failure or Ctrl-C no temporary file."""
  atomic.write(path, lambda tmp: Image.fromarray(
      np.asarray(image_uint8)).save(tmp, format='PNG'))


def save_rows(path, rows, labels=None):
  """Each entry of `rows` is one column of a block; block i shows image i
  of every array side by side (`block_grid`: near-square, upscaled,
  labelled).

  rows: list of (N, H, W, 3) arrays in [-1, 1], e.g. [masked, G(z), result].
  Callers cap N (inpaint.py's --grid-max): the PNG grows with it.
  """
  save_png(path, block_grid(rows, labels)[0])
