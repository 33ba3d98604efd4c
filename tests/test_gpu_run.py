"""scripts/gpu_run.sh end to end on the CPU with a tiny budget: the dry run of
the one-command GPU run (data packed by scripts/prepare_gpu_data.py)."""
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
from PIL import Image

from helpers import REPO, run, write_npz
from jaxinpaint.models import checkpoint


def _prepare_module():
  spec = importlib.util.spec_from_file_location(
      'prepare_gpu_data', REPO / 'scripts' / 'prepare_gpu_data.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_window_of_run_k_starts_at_k_times_count_and_wraps():
  prepare = _prepare_module()
  # CelebA-64: 44,715 train faces, 20,000 a run.
  offsets = [prepare.window_offset(k, 20000, 44715) for k in range(4)]
  assert offsets == [0, 20000, 40000, 60000 - 44715]
  third = prepare.window_indices(40000, 20000, 44715)
  assert third == list(range(40000, 44715)) + list(range(0, 15285))
  assert prepare.index_ranges(third) == [[40000, 44715], [0, 15285]]
  # CelebA-128: 12,000 faces, 9,500 a run.
  assert [prepare.window_offset(k, 9500, 12000) for k in range(4)] == [
      0, 9500, 7000, 4500]
  # More wanted than there are: all of them, once, from the offset.
  assert prepare.window_offset(3, 8000, 8000) == 0
  assert prepare.window_indices(2, 9, 5) == [2, 3, 4, 0, 1]


def _colour_folder(path, n):
  """n 8x8 images of distinct flat greys, named so that sorting keeps i."""
  path.mkdir()
  for i in range(n):
    Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(
        path / f'face_{i:02d}.png')
  return path


def _packed_greys(zip_path):
  """The grey level / 20 of each image in a packed train.zip, in order."""
  with zipfile.ZipFile(zip_path) as z:
    return [int(round(np.asarray(Image.open(io.BytesIO(z.read(n)))).mean()
                      / 20)) for n in sorted(z.namelist())]


def test_prepare_packs_and_records_the_window_of_run_k(tmp_path):
  train = _colour_folder(tmp_path / 'train', 10)
  packed = run(['scripts/prepare_gpu_data.py', '--train', str(train),
                '--count', '4', '--run', '2', '--out', str(tmp_path / 'a')])
  assert packed.returncode == 0, packed.stderr[-2000:]
  # Run 2 of 4 a run over 10 images: indices 8, 9, then 0, 1.
  assert _packed_greys(tmp_path / 'a' / 'train.zip') == [8, 9, 0, 1]
  window = json.loads((tmp_path / 'a' / 'window.json').read_text())
  assert window['run'] == 2 and window['offset'] == 8
  assert window['ranges'] == [[8, 10], [0, 2]]
  assert (window['first'], window['last']) == ('face_08.png', 'face_01.png')
  assert (window['total'], window['count']) == (10, 4)

  packed = run(['scripts/prepare_gpu_data.py', '--train', str(train),
                '--count', '3', '--offset', '9', '--out', str(tmp_path / 'b')])
  assert packed.returncode == 0, packed.stderr[-2000:]
  assert _packed_greys(tmp_path / 'b' / 'train.zip') == [9, 0, 1]
  window = json.loads((tmp_path / 'b' / 'window.json').read_text())
  assert window['run'] is None and window['ranges'] == [[9, 10], [0, 2]]

  bad = run(['scripts/prepare_gpu_data.py', '--train', str(train),
             '--offset', '10', '--out', str(tmp_path / 'c')])
  assert bad.returncode != 0 and not (tmp_path / 'c').exists()
  assert bad.stderr.strip().splitlines()[-1] == (
      f'error: --offset 10: expected 0 <= N < 10 (the images in --train '
      f'{train})')


def _image_folder(path, images):
  path.mkdir()
  for i, image in enumerate(images):
    Image.fromarray(image).save(path / f'{i:03d}.png')
  return path


def test_gpu_run_script_dry_run(tmp_path):
  images = np.load(write_npz(tmp_path / 'images.npz', n=44))['images']
  train = _image_folder(tmp_path / 'train', images[:40])
  test = _image_folder(tmp_path / 'test', images[40:])
  packed = run(['scripts/prepare_gpu_data.py', '--train', str(train),
                '--test', str(test), '--count', '40',
                '--out', str(tmp_path / 'data')])
  assert packed.returncode == 0, packed.stderr[-2000:]
  assert '40 training images' in packed.stdout

  results = tmp_path / 'results'
  # TRAIN_STEPS: training stops after 3 steps, not at the time limit (the
  # budget's), which would make the test wait out the budget whatever the
  # machine's speed, and fail on one too busy to compile within it; how a
  # time limit stops, finalizes and exports is test_budgeted_training's.
  env = dict(os.environ, PYTHON=sys.executable, DATA=str(tmp_path / 'data'),
             WHEELS=str(tmp_path / 'no_wheels'), INIT_FROM='',
             RESULTS=str(results), WORK=str(tmp_path / 'work'), BUDGET='550',
             RESERVE='55', TRAIN_STEPS='3', CONFIG='configs/tiny.py',
             RES='32', WIDTH='8', BATCH='8', FACES='4', CSTEPS='5',
             MASKS='center', BENCH='0',
             GRID='0')  # the grid has its own test (test_settings_grid)
  result = subprocess.run(['bash', 'scripts/gpu_run.sh'], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:]
  names = {p.name for p in results.iterdir()}
  assert {'model.tar', 'tables.tar', 'metrics.jsonl', 'figures.json',
          'log.txt'} <= names
  assert len(names) <= 8
  log = (results / 'log.txt').read_text()
  # Training's time limit is what the budget leaves after the reserve.
  started, limit = map(int, re.search(r'\[(\d+)s\] training for (\d+)s',
                                      log).groups())
  assert started + limit - (550 - 55) in (0, 1)  # (a clock tick between)
  assert 'training ended with exit code 0' in log
  figures = json.loads((results / 'figures.json').read_text())
  assert figures['final_step'] == 3
  assert figures['tables']['settings']['n_images'] == 4
  # The training window travels in the data and comes back in the figures.
  assert figures['train_window']['ranges'] == [[0, 40]]
  assert figures['train_window']['run'] == 0

  with tarfile.open(results / 'model.tar') as tar:
    tar.extractall(tmp_path / 'back', filter='data')
  config, _, step = checkpoint.load_inference_variables(
      tmp_path / 'back' / 'model')
  assert step == figures['final_step']
  assert (config.model.width, config.model.resolution) == (8, 32)
  with tarfile.open(results / 'tables.tar') as tar:
    table = tar.extractfile('tables/table_center.md').read().decode()
  assert '| paper_wgan |' in table and '| yeh_wgan |' in table
