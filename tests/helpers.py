"""Small helpers shared by the tests."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / 'shared' / 'data'


def shared_folder(*parts):
  """A folder of ../shared/data, or skip the test with the reason."""
  folder = SHARED_DATA.joinpath(*parts)
  if not folder.is_dir():
    pytest.skip(f'data folder {folder} is absent (a clone without ../shared)')
  return folder


def load_config(name, **overrides):
  """configs/<name>.py's get_config() with dotted-key overrides."""
  spec = importlib.util.spec_from_file_location(
      f'config_{name}', REPO / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for key, value in overrides.items():
    *path, leaf = key.split('.')
    node = config
    for p in path:
      node = node[p]
    node[leaf] = value
  return config


def write_npz(path, n=64, size=32, seed=0):
  """uint8 images with some structure (smooth blobs), as an .npz source."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size] / size
  images = []
  for _ in range(n):
    c = rng.random((3, 3))
    img = np.stack([np.sin(6 * (c[k, 0] * xx + c[k, 1] * yy) + 6 * c[k, 2])
                    for k in range(3)], -1)
    images.append(((img + 1) * 127.5).astype(np.uint8))
  np.savez(path, images=np.stack(images))
  return path


def run(args, env=None, timeout=600, **kwargs):
  """Runs a Python command in the repo; returns the CompletedProcess."""
  full_env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, *args], cwd=REPO, env=full_env,
                        capture_output=True, text=True, timeout=timeout,
                        **kwargs)
