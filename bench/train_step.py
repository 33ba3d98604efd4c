"""Training speed: generator iterations/s, data from the host vs on the device.

  python bench/train_step.py                      # paper size: 64x64, d=64, batch 64
  python bench/train_step.py --widths 32,64 --config.model.dtype=bfloat16
  python bench/train_step.py --config configs/tiny.py

For each width, builds `training.build_train_functions` twice (as training
does) and times `--steps` jitted steps of each, side by side:
  host:    real batches made on the host (float32) and copied to the device
           every step, as the host input pipeline does (decoding excluded:
           bench/data_pipeline.py times that);
  device:  a uint8 set already on the device, batches drawn inside the step
           (`--config.data.on_device=True`).
One generator iteration = n_critic critic updates + one generator update;
"images/s" counts the real images consumed, n_critic x batch per iteration.
"""
import time
from pathlib import Path

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from jaxinpaint import cli, models, sharding, training
from jaxinpaint.training import config_schema

REPO = Path(__file__).resolve().parents[1]
config_flags.DEFINE_config_file('config', str(REPO / 'configs/celeba64.py'),
                                'Config to time.', lock_config=True)
flags.DEFINE_integer('steps', 20, 'Timed generator iterations.')
flags.DEFINE_list('widths', [], 'Base widths to time (default: the config\'s).')
flags.DEFINE_integer('images', 2048, 'Images in the on-device set.')


def time_steps(step_fn, state, make_input, steps):
  """(compile seconds, iterations/s) of `steps` calls after a warm-up."""
  start = time.perf_counter()
  state, metrics = step_fn(state, make_input())  # compiles
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step_fn(state, make_input())
  jax.block_until_ready((state, metrics))
  return compile_s, steps / (time.perf_counter() - start)


def bench_width(config, steps, num_images):
  nets = models.build_models(config.model)
  mesh = sharding.training_mesh()
  res, batch, n_critic = (config.model.resolution, config.train.batch_size,
                          config.train.n_critic)
  rng = np.random.default_rng(0)
  host_batch = rng.uniform(-1, 1, (n_critic, batch, res, res, 3)).astype(
      np.float32)
  device_set = rng.integers(
      0, 256, (max(num_images, n_critic * batch), res, res, 3), np.uint8)
  results = {}
  for mode in ('host', 'device'):
    functions = training.build_train_functions(config, nets, mesh,
                                               on_device=mode == 'device')
    if mode == 'host':  # copied every step, as the host pipeline's batches
      make_input = lambda f=functions: jax.device_put(host_batch,
                                                      f.input_sharding)
    else:  # copied once
      images = jax.device_put(device_set, functions.input_sharding)
      make_input = lambda: images
    results[mode] = time_steps(functions.step, functions.init(), make_input,
                               steps)
  return results


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # a CLI's main: no INFO chatter
  config = flags.FLAGS.config
  try:  # bad flag values: one line and exit code 2, as every CLI here
    config_schema.validate(config)
    sharding.check_batch_size(config.train.batch_size)
    widths = flags.FLAGS.widths or [str(config.model.width)]
    if not all(w.isdigit() and int(w) >= 1 for w in widths):
      raise ValueError(f'--widths {",".join(widths)}: expected positive '
                       'integers, e.g. --widths 32,64')
    if flags.FLAGS.steps < 1:
      raise ValueError(f'--steps must be >= 1, got {flags.FLAGS.steps}')
  except ValueError as e:
    cli.fail(str(e).splitlines()[0], cli.USAGE)
  print(f'device: {jax.device_count()} x {jax.devices()[0].device_kind}')
  for width in map(int, widths):
    config.model.width = width
    results = bench_width(config, flags.FLAGS.steps, flags.FLAGS.images)
    print(f'config: {config.model.arch} {config.model.resolution}x'
          f'{config.model.resolution} width {width} batch '
          f'{config.train.batch_size} n_critic {config.train.n_critic} dtype '
          f'{config.model.dtype} critic loop '
          f'{training.resolve_critic_loop(config.train)}')
    images_per_it = config.train.batch_size * config.train.n_critic
    for mode, (compile_s, its) in results.items():
      print(f'  data on {mode:6s}: {its:8.2f} it/s  {its * images_per_it:8.0f} '
            f'images/s  (compile {compile_s:.1f} s)')
    print(f'  device/host: {results["device"][1] / results["host"][1]:.2f}x')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
