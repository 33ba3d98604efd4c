"""Packs training and test images small enough to travel to an offline GPU host.

  python scripts/prepare_gpu_data.py --train ../shared/data/celeba64/train \
      --test ../shared/data/celeba64/test --count 20000 --run 1 --out .gpudata

Re-encodes a window of `--count` training images as JPEG at `--quality`
(85: ~1.95 KB a 64x64 face) into OUT/train.zip. The window is `--count`
consecutive names of the sorted training set starting at `--offset`,
wrapping around past the last name; `--run K` starts it at K * count mod
the set's size, so runs 0, 1, 2, ... of a warm-started model each train on
the next faces (44,715 faces, 20,000 a run: 0-19,999, 20,000-39,999, then
40,000-44,714 + 0-15,284, ...) and across runs see the whole split rather
than the same first 20,000. OUT/window.json records the window (run,
offset, count, the index ranges, the first and last names, a hash of all
of them); it travels with the data and `scripts/gpu_run.sh` copies it into
the figures it brings back, so a model card can list the windows trained
on. The test images go to OUT/test.zip: unchanged, or, with
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
import hashlib
import io
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from jaxinpaint import data
from jaxinpaint.training import config_schema


def window_offset(run: int, count: int, total: int) -> int:
  """The first index of run `run`'s window: run * count mod total, so
  consecutive runs take consecutive windows of `count` images."""
  return run * min(count, total) % total


def window_indices(offset: int, count: int, total: int) -> list[int]:
  """`count` consecutive indices of [0, total) from `offset`, wrapping
  around past the end; all of them once when count >= total."""
  if not 0 <= offset < total:
    raise ValueError(f'offset {offset}: expected 0 <= offset < {total}')
  return [(offset + i) % total for i in range(min(count, total))]


def index_ranges(indices) -> list[list[int]]:
  """Consecutive runs of `indices` as [start, stop) pairs (stop exclusive)."""
  ranges = []
  for i in indices:
    if ranges and ranges[-1][1] == i:
      ranges[-1][1] += 1
    else:
      ranges.append([i, i + 1])
  return ranges


def window_record(names, indices, *, run, offset, source, quality) -> dict:
  """What window.json says about the chosen training images."""
  chosen = [Path(names[i]).name for i in indices]
  return dict(
      train=str(source), total=len(names), count=len(chosen), run=run,
      offset=offset, ranges=index_ranges(indices), first=chosen[0],
      last=chosen[-1], quality=quality,
      names_sha256=hashlib.sha256('\n'.join(chosen).encode()).hexdigest())


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
  source = config_schema.base_config().data
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
  where = p.add_mutually_exclusive_group()
  where.add_argument('--run', type=int, default=None, metavar='K',
                     help='take run K\'s window: from index K * count mod '
                     'the number of training images (default: run 0)')
  where.add_argument('--offset', type=int, default=None, metavar='N',
                     help='take the window from sorted index N instead')
  p.add_argument('--test-count', type=int, default=None, metavar='N',
                 help='store only the first N test images (sorted; default: '
                 'all; the tables use the first 256)')
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
  if args.count < 1:
    sys.exit(f'error: --count {args.count}: expected a positive integer')
  if args.test_count is not None and args.test_count < 1:
    sys.exit(f'error: --test-count {args.test_count}: expected a positive '
             'integer')
  if args.run is not None and args.run < 0:
    sys.exit(f'error: --run {args.run}: expected 0 or more')
  out = Path(args.out)
  if out.exists() and any(out.iterdir()):
    sys.exit(f'error: --out {out}: exists and is not empty')
  names = data.list_image_files(args.train)
  if not names:
    sys.exit(f'error: --train {args.train}: no images found')
  # An explicit --offset belongs to no run; neither flag is run 0.
  run = 0 if args.run is None and args.offset is None else args.run
  offset = (args.offset if args.offset is not None else
            window_offset(run, args.count, len(names)))
  if not 0 <= offset < len(names):
    sys.exit(f'error: --offset {offset}: expected 0 <= N < {len(names)} '
             f'(the images in --train {args.train})')
  indices = window_indices(offset, args.count, len(names))
  out.mkdir(parents=True, exist_ok=True)
  train = [names[i] for i in indices]
  with concurrent.futures.ThreadPoolExecutor() as pool:
    contents = list(pool.map(lambda p: _reencode(p, args.quality), train))
  _write_zip(out / 'train.zip', [f'{i:06d}.jpg' for i in range(len(train))],
             contents)
  if args.test:
    test = data.list_image_files(args.test)[:args.test_count]
    if args.test_resolution:
      decoded = _decoded(args.test, args.test_resolution)[:len(test)]
      _write_zip(out / 'test.zip', [f'{Path(p).stem}.png' for p in test],
                 map(_png, decoded))
    else:
      _write_zip(out / 'test.zip', [Path(p).name for p in test],
                 [Path(p).read_bytes() for p in test])
  record = window_record(names, indices, run=run, offset=offset,
                         source=args.train, quality=args.quality)
  (out / 'window.json').write_text(json.dumps(record, indent=1) + '\n')
  size = sum(f.stat().st_size for f in out.iterdir())
  print(f'window: run {run}, offset {offset}, indices '
        + ', '.join(f'{a}-{b - 1}' for a, b in record['ranges'])
        + f' of {len(names)} ({record["first"]} .. {record["last"]})')
  print(f'{len(train)} training images in {out}/train.zip'
        + (f', {len(test)} test images in {out}/test.zip' if args.test else '')
        + f': {size / 2**20:.1f} MiB')


if __name__ == '__main__':
  main()
