"""Benchmark: completion throughput on 1, 2, 4, ... devices of one host.

Runs `batched.inpaint_batches` (central square hole, the paper's loss,
randomly initialized networks: the speed does not depend on the weights'
values) with `devices=n` for each n of `--devices`, in one run, each
device given the same `--images-per-device` images (one batch of
n x images-per-device), and prints images/s, the ratio to the first count
and the scaling efficiency images/s at n / (n x images/s at 1). Each setting is timed on its second
call, after compilation.

On a CPU host it forces as many host devices as the largest n (the count
must be set before jax starts; this script sets XLA_FLAGS itself). Forced
host devices share the machine's cores, so their scaling is bounded by the
cores, not the device count. On GPUs it uses the real devices.

  python bench/completion_devices.py --devices 1,2,4            # CPU check
  python bench/completion_devices.py --devices 1,2,4,8 --width 32 \\
      --images-per-device 64 --steps 1000 --dtype bfloat16      # 8-GPU host
"""
import argparse
import os
import time


def _parse_counts(text):
  try:
    counts = sorted({int(c) for c in text.split(',')})
  except ValueError:
    counts = []
  if not counts or counts[0] < 1:
    raise SystemExit(f'error: --devices {text!r}: expected a comma-separated '
                     'list of device counts >= 1, e.g. 1,2,4')
  return counts


def main():
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='\n'.join(__doc__.splitlines()[2:]))
  parser.add_argument('--devices', default='1,2,4',
                      help='device counts to compare (default 1,2,4)')
  parser.add_argument('--images-per-device', type=int, default=4)
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--width', type=int, default=8,
                      help='base width d of the nets (64: the paper)')
  parser.add_argument('--resolution', type=int, default=64)
  parser.add_argument('--restarts', type=int, default=1)
  parser.add_argument('--dtype', default='float32',
                      help="activations' dtype (bfloat16 on GPUs)")
  parser.add_argument('--loss', default='paper')
  args = parser.parse_args()
  counts = _parse_counts(args.devices)

  # Before jax starts: only the CPU platform reads this flag.
  os.environ['XLA_FLAGS'] = (
      os.environ.get('XLA_FLAGS', '') +
      f' --xla_force_host_platform_device_count={counts[-1]}').strip()
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import completion, models
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint.training import config_schema
  from jaxinpaint.data import masks
  from jaxinpaint.completion import batched

  local = jax.local_devices()
  if counts[-1] > len(local):
    raise SystemExit(f'error: --devices {args.devices}: this host has '
                     f'{len(local)} {local[0].device_kind} devices')
  c = config_schema.base_config()
  c.model.resolution, c.model.width, c.model.dtype = (args.resolution,
                                                      args.width, args.dtype)
  model = models.Model.from_config(c.model, models.random_variables(c.model))
  s = args.resolution
  options = completion.Options(steps=args.steps, restarts=args.restarts)
  spec = completion.get_loss(args.loss)
  rng = np.random.default_rng(0)
  print(f'{local[0].device_kind} x {len(local)} ({jax.default_backend()}, '
        f'{os.cpu_count()} host cores), width {args.width}, {s}x{s}, '
        f'{args.steps} steps, {args.restarts} restart(s), '
        f'{args.images_per_device} images per device, {args.loss} loss')

  rates = {}
  for n in counts:
    images = n * args.images_per_device
    y = np.clip(rng.normal(0, 0.5, (images, s, s, 3)), -1, 1).astype(
        np.float32)
    run = lambda: batched.inpaint_batches(
        model, y, masks.center_mask(1, s, s), np.arange(images),
        spec=spec, options=options, batch_size=images, seed=0,
        progress=False, devices=n)
    start = time.perf_counter()
    run()  # compiles
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    rates[n] = images / seconds
    efficiency = rates[n] / (n * rates[counts[0]] / counts[0])
    print(f'{n} device(s): {images:4d} images in {seconds:7.2f} s = '
          f'{rates[n]:8.2f} images/s, {rates[n] / rates[counts[0]]:.2f}x '
          f'the {counts[0]}-device rate, scaling efficiency '
          f'{efficiency:.2f} (first call {compile_s:.1f} s)', flush=True)


if __name__ == '__main__':
  main()
