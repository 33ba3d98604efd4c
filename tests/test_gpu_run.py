"""scripts/gpu_run.sh end to end on the CPU with a tiny budget: the dry run of
the one-command GPU run (data packed by scripts/prepare_gpu_data.py)."""
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
from PIL import Image

from helpers import REPO, run, write_npz
from jaxinpaint import checkpoint


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
  env = dict(os.environ, PYTHON=sys.executable, DATA=str(tmp_path / 'data'),
             WHEELS=str(tmp_path / 'no_wheels'), INIT_FROM='',
             RESULTS=str(results), WORK=str(tmp_path / 'work'), BUDGET='150',
             RESERVE='55', CONFIG='configs/tiny.py', RES='32', WIDTH='8',
             BATCH='8', FACES='4', CSTEPS='5', MASKS='center', BENCH='0')
  result = subprocess.run(['bash', 'scripts/gpu_run.sh'], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:]
  names = {p.name for p in results.iterdir()}
  assert {'model.tar', 'tables.tar', 'metrics.jsonl', 'figures.json',
          'log.txt'} <= names
  assert len(names) <= 8
  figures = json.loads((results / 'figures.json').read_text())
  assert figures['final_step'] >= 1
  assert figures['tables']['settings']['n_images'] == 4

  with tarfile.open(results / 'model.tar') as tar:
    tar.extractall(tmp_path / 'back', filter='data')
  config, _, step = checkpoint.load_inference_variables(
      tmp_path / 'back' / 'model')
  assert step == figures['final_step']
  assert (config.model.width, config.model.resolution) == (8, 32)
  with tarfile.open(results / 'tables.tar') as tar:
    table = tar.extractfile('tables/table_center.md').read().decode()
  assert '| paper_wgan |' in table and '| yeh_wgan |' in table
