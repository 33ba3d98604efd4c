"""Benchmark: inpaint.py's peak memory and throughput against the input count.

inpaint.py streams its inputs (`inpaint_run`): each batch is decoded when it
is due (the next one on a thread while the current one computes) and
written when done, so its memory should stay flat as the number of images
grows, where decoding every input into one array first (what it did before)
grows by 4 x R x R x 3 bytes per image (and as much again for per-image
masks). For each count this runs, each in a fresh process:
  streamed:  `inpaint.py --evaluate` on a folder of `count` PNGs;
  in memory: the same run (same plan, same writes and metrics) with every
             image decoded into one array before the first batch (the old
             way);
and prints their peak resident memory (ru_maxrss) and images per second
side by side. The model is a random tiny one (`--width`, the speed of the
reading and writing is what is measured: `--steps 1`, no blending), the
images smooth random PNGs written once into a temporary folder.

  python bench/inpaint_memory.py                        # 2,000 and 20,000
  python bench/inpaint_memory.py --counts 200,2000      # a quick look
"""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _write_images(folder: Path, count: int, size: int):
  rng = np.random.default_rng(0)
  folder.mkdir(parents=True, exist_ok=True)
  for i in range(count):
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR
                                   ).save(folder / f'im{i:06d}.png')


def _write_model(path: Path, resolution: int, width: int):
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint.models import checkpoint
  from jaxinpaint.training import config_schema
  from jaxinpaint import models
  c = config_schema.base_config()
  c.model.resolution, c.model.width, c.model.z_dim = resolution, width, 16
  checkpoint.export_inference(path, c, models.random_variables(c.model), 1)


class _InMemory:
  """Rows already decoded into one array (the old way), as a rows reader."""

  def __init__(self, array):
    self.array = array

  def __len__(self):
    return len(self.array)

  def read(self, rows):
    return self.array[np.asarray(rows)]


def _child(mode: str, model: str, folder: str, count: int, out: str,
           batch_size: int):
  """One measurement in this (fresh) process: prints a JSON line."""
  from jaxinpaint import cli  # pylint: disable=g-import-not-at-top
  from jaxinpaint.cli import inpaint
  cli.prepare_host()
  start = time.perf_counter()
  args = inpaint.build_parser().parse_args(
      ['--checkpoint', model, '--input', folder, '--limit', str(count),
       '--out', out, '--steps', '1', '--no-blend', '--evaluate',
       '--batch-size', str(batch_size), '--grid-max', '16'])
  plan = inpaint.prepare(args)
  if mode == 'in_memory':  # the same run, every input decoded up front
    plan.images = _InMemory(plan.images.read_all())
  inpaint.run(args, plan)
  seconds = time.perf_counter() - start
  peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
  print(json.dumps(dict(seconds=seconds, peak_mib=peak_kib / 1024)))


def main():
  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--counts', default='2000,20000',
                 help='image counts, comma-separated (default: 2000,20000)')
  p.add_argument('--resolution', type=int, default=64)
  p.add_argument('--width', type=int, default=4,
                 help='width of the random model (default: 4)')
  p.add_argument('--batch-size', type=int, default=256)
  p.add_argument('--child', nargs=5, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.child:
    mode, model, folder, count, out = args.child
    _child(mode, model, folder, int(count), out, args.batch_size)
    return
  counts = [int(c) for c in args.counts.split(',')]
  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    print(f'writing {max(counts)} images of {args.resolution}x'
          f'{args.resolution} and a width-{args.width} random model ...',
          file=sys.stderr)
    _write_images(tmp / 'images', max(counts), args.resolution)
    _write_model(tmp / 'model', args.resolution, args.width)
    print(f'{"images":>8} {"mode":>10} {"peak MiB":>9} {"images/s":>9}')
    for count in counts:
      for mode in ('streamed', 'in memory'):
        child = subprocess.run(
            [sys.executable, __file__, '--batch-size', str(args.batch_size),
             '--child', mode.replace(' ', '_'), str(tmp / 'model'),
             str(tmp / 'images'), str(count),
             str(tmp / f'out{count}_{mode.replace(" ", "_")}')],
            capture_output=True, text=True, check=False)
        if child.returncode != 0:
          sys.exit(f'{mode} run of {count} images failed:\n'
                   f'{child.stderr[-2000:]}')
        result = json.loads(child.stdout.strip().splitlines()[-1])
        print(f'{count:>8} {mode:>10} {result["peak_mib"]:>9.0f} '
              f'{count / result["seconds"]:>9.1f}', flush=True)


if __name__ == '__main__':
  main()
