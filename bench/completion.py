"""Benchmark: batched latent search vs one image at a time.

Completes N images (central square hole) with the paper's loss, `--steps`
Adam iterations each, with randomly initialized networks of the paper's size
(width 64, 64x64: the speed does not depend on the weights' values). Three
ways, in the same run, each timed on its second call (after compilation):
  batched, scan:  one `completion.complete` call on all N images (vmapped),
                  all steps in one compiled lax.scan (`Options.loop='scan'`);
  batched, host:  the same, the steps run from Python over one compiled
                  step (`Options.loop='host'`, the default on CPU);
  one at a time:  N calls with batch 1, as a per-image script would do it.
With `--dtype bfloat16` (any dtype but float32) it also runs the batched
search with G and the critics in that dtype (`Options.dtype`; z, Adam and
the loss stay float32) and prints its speed beside float32's and how far its
results move: max |Δz| and the MSE (uint8 scale) of the blended images.
The process reuses freed memory as the jaxinpaint CLIs do
(`host_memory.reuse_freed_memory`).

  python bench/completion.py                       # 64 images x 1000 steps
  python bench/completion.py --width 8 --images 16 --steps 50   # CPU check
  python bench/completion.py --dtype bfloat16 --batched-only    # GPU: bf16
"""
import argparse
import time

import jax
import numpy as np

from jaxinpaint import completion, host_memory, models
from jaxinpaint.data import masks
from jaxinpaint.ops import metrics
from jaxinpaint.training import config_schema


def _smooth_images(rng, n, s):
  coarse = rng.uniform(-1, 1, (n, s // 8 + 1, s // 8 + 1, 3))
  up = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)[:, :s, :s]
  return np.clip(up + 0.1 * rng.normal(size=up.shape), -1,
                 1).astype(np.float32)


def main():
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='\n'.join(__doc__.splitlines()[2:]))
  parser.add_argument('--images', type=int, default=64)
  parser.add_argument('--steps', type=int, default=1000)
  parser.add_argument('--width', type=int, default=64,
                      help='base width d of the nets (64: the paper)')
  parser.add_argument('--resolution', type=int, default=64)
  parser.add_argument('--restarts', type=int, default=1)
  parser.add_argument('--dtype', default='float32',
                      help="also time the search with the nets' activations "
                      "in this dtype (bfloat16 on GPUs) beside float32")
  parser.add_argument('--loss', default='paper', choices=sorted(
      completion.LOSSES))
  parser.add_argument('--batched-only', action='store_true',
                      help='skip the one-image-at-a-time run (N compiled '
                      'calls: minutes on a GPU at 1000 steps)')
  args = parser.parse_args()
  host_memory.reuse_freed_memory()

  c = config_schema.base_config()
  c.model.resolution, c.model.width = args.resolution, args.width
  model = models.Model.from_config(
      c.model, jax.device_put(models.random_variables(c.model)))
  n, s = args.images, args.resolution
  rng = np.random.default_rng(0)
  y = jax.device_put(_smooth_images(rng, n, s))
  mask = jax.device_put(masks.center_mask(n, s, s))
  keys = completion.image_keys(0, np.arange(n))
  spec = completion.get_loss(args.loss)

  print(f'device: {jax.devices()[0].device_kind} ({jax.default_backend()})')
  print(f'{n} images {s}x{s}, width {args.width}, z {c.model.z_dim}, '
        f'{args.steps} steps, {args.restarts} restart(s), loss {args.loss}')

  def run(loop, rows, dtype=None):
    options = completion.Options(steps=args.steps, restarts=args.restarts,
                                 loop=loop, dtype=dtype)
    return completion.complete(model, y[rows], mask[rows], keys[rows],
                               spec=spec, options=options)

  def timed(fn):
    """Seconds of the second call (the first one compiles)."""
    jax.block_until_ready(fn())
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t0

  batch = slice(0, n)
  results = {loop: timed(lambda loop=loop: run(loop, batch))
             for loop in ('scan', 'host')}

  def one_at_a_time():
    return [run('auto', slice(i, i + 1))['z'] for i in range(n)]

  for loop, (_, t) in results.items():
    print(f'batched, Options.loop={loop!r} (1 call of {n}): {t:9.2f} s '
          f'{n / t:9.2f} images/s')
  if jax.numpy.dtype(args.dtype) != jax.numpy.float32:
    compare_dtype(results, lambda: run('auto', batch, args.dtype), args.dtype,
                  timed)
  if args.batched_only:
    return
  loop_z, t_loop = timed(one_at_a_time)
  print(f"one image at a time ({n} calls, 'auto'):   {t_loop:9.2f} s "
        f'{n / t_loop:9.2f} images/s')
  (scan_out, t_scan), (host_out, t_host) = results['scan'], results['host']
  print(f'ratio scan/host: {t_scan / t_host:.2f}x (auto picks host on a CPU '
        f'backend, scan elsewhere; this backend: {jax.default_backend()})')
  best = min(t_scan, t_host)
  print(f'speed-up one-at-a-time/batched (faster loop): {t_loop / best:.1f}x')
  # Same keys and a vmapped per-image step: only the kernels' rounding can
  # differ (batch 1 or the other loop may use others), and Adam, nearly
  # sign(gradient) for small gradients, can grow a 1e-7 difference over many
  # steps.
  z = np.asarray(scan_out['z'])
  print(f"max |z_scan - z_host|: {np.abs(z - host_out['z']).max():.2e}; "
        f'max |z_scan - z_one_at_a_time|: '
        f'{np.abs(z - np.concatenate(loop_z)).max():.2e}')


def compare_dtype(float32_results, run, dtype, timed):
  """Speed and results of the search in `dtype` beside float32's."""
  loop = 'host' if completion.uses_host_loop(completion.Options()) else 'scan'
  ref, t_ref = float32_results[loop]
  out, t = timed(run)
  dz = np.abs(np.asarray(out['z']) - np.asarray(ref['z'])).max()
  diff = (metrics.to_uint8(out['blended']).astype(np.float64)
          - metrics.to_uint8(ref['blended']))
  print(f"batched, Options.loop='auto', Options.dtype={dtype!r}: {t:9.2f} s "
        f'(float32 {t_ref:.2f} s, speed-up {t_ref / t:.2f}x); vs float32: '
        f'max |dz| {dz:.2e}, blended MSE {np.mean(diff**2):.2f} '
        f'(uint8 scale), mean |diff| {np.mean(np.abs(diff)):.2f} grey levels')


if __name__ == '__main__':
  main()
