"""grid.png's layout: near-square blocks, nearest upscaling, labels."""
import numpy as np
import pytest

from jaxinpaint.data import grids


def test_upscale_factor():
  assert [grids.upscale_factor(s) for s in (16, 32, 64, 100, 128, 200)] == [
      8, 4, 2, 2, 1, 1]


@pytest.mark.parametrize('n, k, expected', [
    (16, 3, 2),  # 2 triples a row: 6 x 8 cells (3 a row: 9 x 6)
    (64, 4, 4),  # 16 x 16 cells
    (64, 3, 5),  # 15 x 13 cells
    (3, 4, 1),
    (1, 3, 1),
])
def test_blocks_per_row_is_nearest_to_square(n, k, expected):
  assert grids.blocks_per_row(n, k) == expected
  # The definition, by brute force over every b.
  def squareness(b):
    return abs(np.log(b * k / -(-n // b)))
  best = min(squareness(b) for b in range(1, n + 1))
  assert squareness(expected) == pytest.approx(best)


def _columns(n, k, h, w, seed=0):
  """k columns of n images whose uint8 values are known exactly."""
  rng = np.random.default_rng(seed)
  uint8 = rng.integers(0, 256, (k, n, h, w, 3)).astype(np.uint8)
  return [u.astype(np.float32) / 127.5 - 1.0 for u in uint8], uint8


def test_block_grid_places_upscaled_cells():
  n, k, h, w = 7, 3, 16, 16
  columns, uint8 = _columns(n, k, h, w)
  grid, layout = grids.block_grid(columns, labels=['input', 'G(z)', 'out'])
  # 16 px → 8x (128 px cells). 7 triples: 2 a row (6 x 4 cells; 1 a row
  # would be 3 x 7), 4 rows.
  assert (layout.cell_h, layout.cell_w, layout.per_row, layout.rows) == (
      128, 128, 2, 4)
  # Hand-computed: label 20 + gap 8 + 4 rows of (128 + gap 8) = 572 high;
  # gap 8 + 2 blocks of (3·128 + 2·2 pad + gap 8) = 800 wide.
  assert grid.shape == (572, 800, 3)
  assert layout.origin(0, 0) == (28, 8)
  assert layout.origin(0, 2) == (28, 8 + 2 * 130)
  assert layout.origin(1, 0) == (28, 8 + 396)
  assert layout.origin(4, 1) == (28 + 2 * 136, 8 + 130)
  for i in range(n):
    for j in range(k):
      y, x = layout.origin(i, j)
      cell = grid[y:y + 128, x:x + 128]
      # Nearest upscaling: every source pixel is an 8x8 square of its value.
      assert np.array_equal(cell[::8, ::8], uint8[j, i])
      assert np.array_equal(cell, np.kron(uint8[j, i],
                                          np.ones((8, 8, 1), np.uint8)))
  # Image 7's slot (row 3, second block) is empty: white background.
  y, x = layout.origin(7, 0)
  assert (grid[y:y + 128, x:x + layout.block_width] == 255).all()
  # Labels: dark text in the strip above each block column, nowhere else.
  strip = grid[:20]
  for c in range(2):
    for j in range(k):
      _, x = layout.origin(c, j)
      assert strip[:, x:x + 128].min() < 128
  assert (grid[20:28] == 255).all()


def test_block_grid_keeps_large_images_and_checks_labels():
  columns, uint8 = _columns(2, 2, 130, 140)
  grid, layout = grids.block_grid(columns)
  assert (layout.cell_h, layout.cell_w) == (130, 140)  # >= 128: factor 1
  y, x = layout.origin(1, 1)
  assert np.array_equal(grid[y:y + 130, x:x + 140], uint8[1, 1])
  with pytest.raises(ValueError, match='3 labels for 2 columns'):
    grids.block_grid(columns, labels=['a', 'b', 'c'])


def test_save_rows_writes_the_grid(tmp_path):
  from PIL import Image
  columns, _ = _columns(4, 3, 32, 32)
  grids.save_rows(tmp_path / 'g.png', columns, ['a', 'b', 'c'])
  written = np.asarray(Image.open(tmp_path / 'g.png'))
  assert np.array_equal(written, grids.block_grid(columns, ['a', 'b', 'c'])[0])
