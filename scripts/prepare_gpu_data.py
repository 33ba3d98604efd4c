"""Packs training and test images small enough to travel to an offline GPU host.

  python scripts/prepare_gpu_data.py --train ../shared/data/celeba64/train \
      --test ../shared/data/celeba64/test --count 20000 --out .gpudata

Re-encodes the first `--count` training images (sorted names, so the subset is
the same every time) as JPEG at `--quality` (85: ~1.95 KB a 64x64 face) into
OUT/train.zip and stores the test images in OUT/test.zip: unchanged, or, with
`--test-resolution R`, as PNGs of the loader's R x R preprocessing (the
tables need test images at the model's resolution: SVHN's 32x32 digits for
a 64x64 model). One uncompressed zip each, since thousands of small files
cost more to send than their bytes. Prints the size.

On the GPU host, `--decode-to FILE.npz` instead decodes `--train` (a folder
or such a zip) once into one uint8 array (the `config.data.npz` source), so
training reads memory rather than decoding JPEGs every step; `--extract-to
DIR` unpacks a zip (the test images, for the tables).
"""
import argparse
import concurrent.futures
import io
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from jaxinpaint import config as config_lib
from jaxinpaint import data


def _reencode(path, quality):
  buffer = io.BytesIO()
  with Image.open(path) as img:
    img.convert('RGB').save(buffer, 'JPEG', quality=quality)
  return buffer.getvalue()


def _write_zip(path, names, contents):
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
    for name, content in zip(names, contents):
      z.writestr(name, content)


def _read_zip(path):
  with zipfile.ZipFile(path) as z:
    return [(n, z.read(n)) for n in sorted(z.namelist())]


def _png(image):
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, 'PNG')
  return buffer.getvalue()


def _decoded(folder, resolution):
  """The training loader's decoded uint8 set of `folder` (data.load_all)."""
  source = config_lib.base_config().data
  source.folder = str(folder)
  return data.load_all(source, resolution)


def extract(zip_path, folder):
  Path(folder).mkdir(parents=True, exist_ok=True)
  for name, content in _read_zip(zip_path):
    Path(folder, name).write_bytes(content)


def decode_to_npz(source, path, resolution):
  start = time.time()
  if zipfile.is_zipfile(source):
    with tempfile.TemporaryDirectory() as folder:
      extract(source, folder)
      images = _decoded(folder, resolution)
  else:
    images = _decoded(source, resolution)
  np.savez(path, images=images)
  print(f'decoded {len(images)} images from {source} into {path} '
        f'in {time.time() - start:.1f} s')


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--train', required=True, help='folder of training images')
  p.add_argument('--test', default=None, help='folder of test images')
  p.add_argument('--count', type=int, default=20000,
                 help='training images to take (default: 20000, which with '
                 'the repository and the wheels stays under 64 MiB)')
  p.add_argument('--test-resolution', type=int, default=None,
                 help='store the test images preprocessed to this size')
  p.add_argument('--quality', type=int, default=85, help='JPEG quality')
  p.add_argument('--out', default='.gpudata', help='output folder')
  p.add_argument('--decode-to', default=None, metavar='FILE.npz',
                 help='decode --train into one uint8 .npz instead')
  p.add_argument('--extract-to', default=None, metavar='DIR',
                 help='unpack the zip --train into DIR instead')
  p.add_argument('--resolution', type=int, default=64,
                 help='side of the decoded images (with --decode-to)')
  args = p.parse_args()
  if args.decode_to:
    decode_to_npz(args.train, args.decode_to, args.resolution)
    return
  if args.extract_to:
    extract(args.train, args.extract_to)
    return
  out = Path(args.out)
  if out.exists() and any(out.iterdir()):
    sys.exit(f'error: --out {out}: exists and is not empty')
  out.mkdir(parents=True, exist_ok=True)
  train = data.list_image_files(args.train)[:args.count]
  with concurrent.futures.ThreadPoolExecutor() as pool:
    contents = list(pool.map(lambda p: _reencode(p, args.quality), train))
  _write_zip(out / 'train.zip', [f'{i:06d}.jpg' for i in range(len(train))],
             contents)
  if args.test:
    test = data.list_image_files(args.test)
    if args.test_resolution:
      _write_zip(out / 'test.zip', [f'{Path(p).stem}.png' for p in test],
                 map(_png, _decoded(args.test, args.test_resolution)))
    else:
      _write_zip(out / 'test.zip', [Path(p).name for p in test],
                 [Path(p).read_bytes() for p in test])
  size = sum(f.stat().st_size for f in out.iterdir())
  print(f'{len(train)} training images in {out}/train.zip'
        + (f', {len(test)} test images in {out}/test.zip' if args.test else '')
        + f': {size / 2**20:.1f} MiB')


if __name__ == '__main__':
  main()
