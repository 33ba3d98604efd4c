"""Throughput of the training input pipeline (decode, crop, resize, batch),
and the same batches through grain, side by side.

  python bench/data_pipeline.py                      # celeba64/train, 64x64
  python bench/data_pipeline.py --resolution 32 --num-threads 2 4 8

For each thread count, times `data.make_batch_iterator` (the library's
thread pool) and a grain pipeline that yields exactly the same batches (the
same stream of (seed, position) -> image, the same decoding: checked batch
by batch), and prints images/s, CPU time per image and the ratio. grain is
not a dependency of the library: `pip install grain` to get its column.
The first pass over the files also warms the OS page cache (run twice after
a reboot).
"""
import argparse
import functools
import os
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# pylint: disable=g-import-not-at-top
from jaxinpaint import data
from jaxinpaint.training import config_schema


def grain_batches(data_config, resolution, batch_size, seed, num_threads,
                  prefetch_batches):
  """The batches of `data.make_batch_iterator` (one process, from batch 0)
  through grain: a MapDataset over stream positions, mapped to images by
  `data.stream_indices`, batched, read by grain's thread pool."""
  import grain
  source = data.open_source(data_config)
  n = len(source)
  permutation = functools.lru_cache(maxsize=2)(
      lambda epoch: data.epoch_permutation(n, seed, epoch))

  def read(position):
    index = data.stream_indices(n, seed, np.array([position]), permutation)
    return source.read(int(index[0]), resolution)

  def to_batch(images):
    # x = u / 127.5 - 1 in float32, as the library's batches.
    return np.stack(images) / np.float32(127.5) - np.float32(1)

  dataset = (grain.MapDataset.range(0, 1 << 40).map(read)
             .batch(batch_size, batch_fn=to_batch))
  return iter(dataset.to_iter_dataset(grain.ReadOptions(
      num_threads=num_threads,
      prefetch_buffer_size=prefetch_batches * batch_size)))


def time_batches(batches, warmup, count):
  """(images/s, CPU-s, the timed batches' checksums) over `count` batches
  after `warmup` untimed ones."""
  for _ in range(warmup):
    next(batches)
  start, cpu_start = time.perf_counter(), time.process_time()
  sums = [float(next(batches).sum(dtype=np.float64)) for _ in range(count)]
  seconds = time.perf_counter() - start
  return count / seconds, time.process_time() - cpu_start, sums


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--folder', default='../shared/data/celeba64/train',
                 help='image folder, relative to the repository root')
  p.add_argument('--resolution', type=int, default=64)
  p.add_argument('--batch-size', type=int, default=64)
  p.add_argument('--batches', type=int, default=150,
                 help='timed batches per pipeline and thread count')
  p.add_argument('--warmup', type=int, default=20,
                 help='untimed batches first (thread start, page cache)')
  p.add_argument('--num-threads', type=int, nargs='+', default=[2, 8],
                 help='decoding thread counts to try (config default: 8)')
  p.add_argument('--prefetch-batches', type=int, default=8)
  args = p.parse_args()

  folder = (REPO / args.folder).resolve()
  if not folder.is_dir():
    print(f'skipped: no image folder at {folder}')
    return
  try:
    import grain  # noqa: F401
    has_grain = True
  except ImportError:
    has_grain = False
    print('grain is not installed: timing the library pipeline only')
  print(f'{len(os.sched_getaffinity(0))} cores, load average '
        f'{os.getloadavg()[0]:.2f} (other processes skew images/s)')
  cfg = config_schema.base_config().data
  cfg.folder = str(folder)
  cfg.prefetch_batches = args.prefetch_batches
  images = args.batches * args.batch_size
  for num_threads in args.num_threads:
    cfg.num_threads = num_threads
    with data.make_batch_iterator(cfg, args.resolution, args.batch_size,
                                  seed=0) as it:
      ours = time_batches(it, args.warmup, args.batches)
      description = it.description
    line = (f'{description}, {num_threads} threads, batch {args.batch_size}:'
            f' threads {ours[0] * args.batch_size:,.0f} images/s '
            f'({ours[1] / images * 1e6:.0f} CPU-us/image)')
    if has_grain:
      theirs = time_batches(
          grain_batches(cfg, args.resolution, args.batch_size, 0, num_threads,
                        args.prefetch_batches), args.warmup, args.batches)
      # The same batches, or the comparison means nothing.
      np.testing.assert_allclose(theirs[2], ours[2], rtol=1e-12)
      line += (f', grain {theirs[0] * args.batch_size:,.0f} images/s '
               f'({theirs[1] / images * 1e6:.0f} CPU-us/image), '
               f'threads/grain {ours[0] / theirs[0]:.2f}x')
    print(line, flush=True)


if __name__ == '__main__':
  main()
