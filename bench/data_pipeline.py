"""Throughput of the training input pipeline (decode, crop, resize, batch).

  python bench/data_pipeline.py                      # celeba64/train, 64x64
  python bench/data_pipeline.py --resolution 32 --num-threads 2 4 8

Prints images/s and CPU time per image for each thread count. The first pass
over the files also warms the OS page cache (run twice after a reboot).
"""
import argparse
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# pylint: disable=g-import-not-at-top
from jaxinpaint import config as config_lib
from jaxinpaint import data


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--folder', default='../shared/data/celeba64/train',
                 help='image folder, relative to the repository root')
  p.add_argument('--resolution', type=int, default=64)
  p.add_argument('--batch-size', type=int, default=64)
  p.add_argument('--batches', type=int, default=300,
                 help='timed batches per thread count')
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
  print(f'{len(os.sched_getaffinity(0))} cores, load average '
        f'{os.getloadavg()[0]:.2f} (other processes skew images/s)')
  for num_threads in args.num_threads:
    cfg = config_lib.base_config().data
    cfg.folder = str(folder)
    cfg.num_threads = num_threads
    cfg.prefetch_batches = args.prefetch_batches
    with data.make_batch_iterator(cfg, args.resolution, args.batch_size,
                                  seed=0) as it:
      for _ in range(args.warmup):
        next(it)
      start, cpu_start = time.perf_counter(), time.process_time()
      for _ in range(args.batches):
        batch = next(it)
      seconds = time.perf_counter() - start
      cpu_seconds = time.process_time() - cpu_start
    images = args.batches * args.batch_size
    # CPU time per image (all threads) is the figure to compare when other
    # processes share the cores; images/s is what training sees.
    print(f'{it.description}: {num_threads} threads, batch {batch.shape}: '
          f'{images / seconds:,.0f} images/s, '
          f'{cpu_seconds / images * 1e6:.0f} CPU-us/image')


if __name__ == '__main__':
  main()
