"""Unusual but valid inputs to inpaint.py, and runs that were cut short:
one clear note or error, and the run does the right thing."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from test_inpaint_cli import FAST, RES, ckpt, cli, files_under, read_png, write_image  # pylint: disable=unused-import


def test_a_truncated_output_is_completed_again_on_resume(ckpt, tmp_path,
                                                          capsys):
  for i, name in enumerate('abc'):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  out = tmp_path / 'out'
  argv = ['--checkpoint', ckpt, '--input', tmp_path / 'in', '--out', out,
          '--evaluate', '--grid-max', '1', *FAST]
  code, first, _, err = cli(argv, capsys)
  assert code == 0, err
  whole = (out / 'b.png').read_bytes()
  before = read_png(out / 'b.png')
  (out / 'b.png').write_bytes(whole[:len(whole) // 2])  # the disk filled
  code, summary, _, err = cli(argv + ['--resume'], capsys)
  assert code == 0, err
  assert ('note: --resume: the outputs of b are truncated or unreadable; '
          'completing them again') in err
  assert '2 of 3 images are finished' in err
  # Completed alone now, in a padded batch: the same up to float rounding.
  again = read_png(out / 'b.png').astype(int)
  assert np.abs(again - before).max() <= 2
  assert summary['resumed'] == 2
  for key in ('mse', 'psnr', 'ssim', 'hole_mse'):
    assert summary[key] == pytest.approx(first[key], rel=1e-2), key
