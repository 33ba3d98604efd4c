"""Small helpers shared by the tests."""
import importlib.util
import os
import struct
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


def load_experiment(name):
  """experiments/<name>.py as a module. The folder goes first on sys.path,
  as when Python runs the script, so its `import common` finds
  experiments/common.py."""
  folder = str(REPO / 'experiments')
  if folder not in sys.path:
    sys.path.insert(0, folder)
  spec = importlib.util.spec_from_file_location(
      f'experiments_{name}', REPO / 'experiments' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


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


def read_events(path):
  """The Event protos of one TensorBoard events file, read as TFRecords
  (u64 length, u32 length CRC, payload, u32 payload CRC) without
  TensorFlow."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  raw = Path(path).read_bytes()
  events, pos = [], 0
  while pos < len(raw):
    (length,) = struct.unpack('<Q', raw[pos:pos + 8])
    payload = raw[pos + 12:pos + 12 + length]
    assert len(payload) == length, f'{path}: truncated record'
    event = event_pb2.Event()
    event.ParseFromString(payload)
    events.append(event)
    pos += 12 + length + 4
  return events


def event_values(workdir):
  """({(tag, step): scalar}, {step: uint8 image}) of a work dir's events."""
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  scalars, images = {}, {}
  for path in sorted(Path(workdir).glob('events.out.tfevents.*')):
    for event in read_events(path):
      for value in event.summary.value:
        if value.HasField('image'):
          images[event.step] = np.asarray(Image.open(
              io.BytesIO(value.image.encoded_image_string)))
        else:
          scalars[(value.tag, event.step)] = value.simple_value
  return scalars, images


def metrics_scalars(workdir):
  """{(tag, step): value} of every number in a work dir's metrics.jsonl."""
  import json  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint.training import workdir_files
  expected = {}
  for line in (Path(workdir) / 'metrics.jsonl').read_text().splitlines():
    record = json.loads(line)
    for tag, value in workdir_files.event_scalars(record).items():
      expected[(tag, record['step'])] = value
  return expected
