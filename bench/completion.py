"""Benchmark: batched latent search vs one image at a time.

Completes N images (central square hole) with the paper's loss, `--steps`
Adam iterations each, with randomly initialized networks of the paper's size
(width 64, 64x64: the speed does not depend on the weights' values). Two ways,
in the same run, both timed after compilation with `block_until_ready`:
  batched:  one `completion.complete` call on all N images (vmapped), as
            `pipeline.inpaint_batches` runs them;
  loop:     N calls with batch 1 in a Python loop, as a per-image script
            would do it (the same compiled function every call).

  python bench/completion.py                       # 64 images x 1000 steps
  python bench/completion.py --width 8 --images 16 --steps 50   # CPU check
"""
import argparse
import time

import jax
import numpy as np

from jaxinpaint import completion, config as config_lib, masks, models


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
                      help="activations' dtype (bfloat16 on GPUs)")
  parser.add_argument('--loss', default='paper', choices=sorted(
      completion.LOSSES))
  args = parser.parse_args()

  c = config_lib.base_config()
  c.model.resolution, c.model.width, c.model.dtype = (args.resolution,
                                                      args.width, args.dtype)
  nets = models.build_models(c.model)
  variables = jax.device_put(models.random_variables(c.model))
  n, s = args.images, args.resolution
  rng = np.random.default_rng(0)
  y = jax.device_put(_smooth_images(rng, n, s))
  mask = jax.device_put(masks.center_mask(n, s, s))
  keys = completion.image_keys(0, np.arange(n))
  options = completion.Options(steps=args.steps, restarts=args.restarts)
  static = dict(nets=nets, spec=completion.get_loss(args.loss),
                options=options, arch=c.model.arch)

  print(f'device: {jax.devices()[0].device_kind} ({jax.default_backend()})')
  print(f'{n} images {s}x{s}, width {args.width}, z {c.model.z_dim}, '
        f'{args.steps} steps, {args.restarts} restart(s), {args.dtype}, '
        f'loss {args.loss}')

  def compiled(batch):
    t0 = time.perf_counter()
    fn = completion.complete.lower(variables, y[:batch], mask[:batch],
                                   keys[:batch], **static).compile()
    return fn, time.perf_counter() - t0

  batched, t_compile_n = compiled(n)
  single, t_compile_1 = compiled(1)
  print(f'compile: batch {n} {t_compile_n:.1f} s, batch 1 '
        f'{t_compile_1:.1f} s')

  t0 = time.perf_counter()
  out = jax.block_until_ready(batched(variables, y, mask, keys))
  t_batched = time.perf_counter() - t0

  t0 = time.perf_counter()
  loop_z = []
  for i in range(n):
    o = single(variables, y[i:i + 1], mask[i:i + 1], keys[i:i + 1])
    loop_z.append(jax.block_until_ready(o['z']))
  t_loop = time.perf_counter() - t0

  diff = float(np.abs(np.asarray(out['z']) - np.concatenate(loop_z)).max())
  print(f'batched (1 call of {n}):  {t_batched:9.2f} s  '
        f'{n / t_batched:9.2f} images/s')
  print(f'loop ({n} calls of 1):    {t_loop:9.2f} s  '
        f'{n / t_loop:9.2f} images/s')
  print(f'speed-up loop/batched: {t_loop / t_batched:.1f}x')
  # Same keys and a vmapped per-image step: only the kernels' rounding can
  # differ (batch 1 may use others), and Adam, nearly sign(gradient) for
  # small gradients, can grow a 1e-7 difference over many steps.
  print(f'max |z_batched - z_loop|: {diff:.2e}')


if __name__ == '__main__':
  main()
