"""Packs training and test images small enough to travel to an offline GPU host.

  python scripts/prepare_gpu_data.py --train ../shared/data/celeba64/train \
      --test ../shared/data/celeba64/test --count 25000 --out .gpudata

Re-encodes the first `--count` training images (sorted names, so the subset is
the same every time) as JPEG at `--quality` (85: ~1.85 KB a 64x64 face) into
OUT/train and copies the test images unchanged into OUT/test. Prints the size.

On the GPU host, `--decode-to FILE.npz` instead decodes the `--train` folder
once into one uint8 array (the `config.data.npz` source), so training reads
memory rather than decoding JPEGs every step.
"""
import argparse
import concurrent.futures
import time
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from jaxinpaint import data


def _reencode(src, dst, quality):
  with Image.open(src) as img:
    img.convert('RGB').save(dst, 'JPEG', quality=quality)


def decode_to_npz(folder, path, resolution):
  start = time.time()
  files = data.list_image_files(folder)
  chunks = [files[i:i + 1000] for i in range(0, len(files), 1000)]
  with concurrent.futures.ThreadPoolExecutor() as pool:
    parts = list(pool.map(lambda c: data.load_images(c, resolution)[0],
                          chunks))
  # [-1, 1] floats back to the exact uint8 values (x = u / 127.5 - 1).
  images = np.rint((np.concatenate(parts) + 1) * 127.5).astype(np.uint8)
  np.savez(path, images=images)
  print(f'decoded {len(images)} images from {folder} into {path} '
        f'in {time.time() - start:.1f} s')


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--train', required=True, help='folder of training images')
  p.add_argument('--test', default=None, help='folder of test images')
  p.add_argument('--count', type=int, default=25000,
                 help='training images to take (default: 25000)')
  p.add_argument('--quality', type=int, default=85, help='JPEG quality')
  p.add_argument('--out', default='.gpudata', help='output folder')
  p.add_argument('--decode-to', default=None, metavar='FILE.npz',
                 help='decode --train into one uint8 .npz instead')
  p.add_argument('--resolution', type=int, default=64,
                 help='side of the decoded images (with --decode-to)')
  args = p.parse_args()
  if args.decode_to:
    decode_to_npz(args.train, args.decode_to, args.resolution)
    return
  out = Path(args.out)
  if out.exists() and any(out.iterdir()):
    sys.exit(f'error: --out {out}: exists and is not empty')
  train = data.list_image_files(args.train)[:args.count]
  (out / 'train').mkdir(parents=True)
  with concurrent.futures.ThreadPoolExecutor() as pool:
    list(pool.map(
        lambda i: _reencode(train[i], out / 'train' / f'{i:06d}.jpg',
                            args.quality), range(len(train))))
  if args.test:
    (out / 'test').mkdir()
    for path in data.list_image_files(args.test):
      shutil.copy(path, out / 'test' / Path(path).name)
  size = sum(f.stat().st_size for f in out.rglob('*') if f.is_file())
  print(f'{len(train)} training images in {out}/train'
        + (f', test images in {out}/test' if args.test else '')
        + f': {size / 2**20:.1f} MiB')


if __name__ == '__main__':
  main()
