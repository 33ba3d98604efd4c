"""Images to look at: uint8 conversion, PNG files and image grids."""
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from jaxinpaint import metrics


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


def save_png(path, image_uint8):
  """Writes atomically: a crash never leaves a half-written PNG, and a
  failure or Ctrl-C no temporary file."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f'.{path.name}.tmp')
  try:
    Image.fromarray(np.asarray(image_uint8)).save(tmp, format='PNG')
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def save_grid(path, images, ncol: int | None = None):
  save_png(path, make_grid(images, ncol))


def save_rows(path, rows):
  """Each entry of `rows` is one column-block; shows images side by side.

  rows: list of (N, H, W, 3) arrays in [-1, 1], e.g. [masked, G(z), result];
  row i of the PNG shows image i of every array.
  """
  stacked = np.stack([np.asarray(r) for r in rows], axis=1)
  n, k = stacked.shape[:2]
  save_grid(path, stacked.reshape((n * k,) + stacked.shape[2:]), ncol=k)
