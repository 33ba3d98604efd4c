"""Training speed: generator iterations/s and images/s for one config.

  python bench/train_step.py                      # paper size: 64x64, d=64, batch 64
  python bench/train_step.py --config.model.dtype=bfloat16
  python bench/train_step.py --config configs/tiny.py

Compiles once, then times `--steps` jitted steps on synthetic batches (the
input pipeline has its own benchmark, bench/data_pipeline.py). One generator
iteration = n_critic critic updates + one generator update; "images/s" counts
the real images consumed, n_critic x batch per iteration.
"""
import functools
import time
from pathlib import Path

import jax
from absl import app, flags
from jax.sharding import NamedSharding, PartitionSpec as P
from ml_collections import config_flags

from jaxinpaint import models, training

REPO = Path(__file__).resolve().parents[1]
config_flags.DEFINE_config_file('config', str(REPO / 'configs/celeba64.py'),
                                'Config to time.', lock_config=True)
flags.DEFINE_integer('steps', 20, 'Timed generator iterations.')


def main(argv):
  del argv
  config = flags.FLAGS.config
  training.check_batch_size(config.train.batch_size)
  nets = models.build_models(config.model)
  mesh = training.make_mesh()
  replicated = NamedSharding(mesh, P())
  real_sharding = NamedSharding(mesh, P(None, 'data'))
  init = functools.partial(training.init_state, config, nets)
  state_sharding = jax.tree.map(lambda _: replicated, jax.eval_shape(init))
  state = jax.jit(init, out_shardings=state_sharding)()
  step = jax.jit(
      functools.partial(training.train_step, nets=nets, config=config,
                        batch_sharding=NamedSharding(mesh, P('data'))),
      in_shardings=(state_sharding, real_sharding),
      out_shardings=(state_sharding, replicated), donate_argnums=0)
  res, batch, n_critic = (config.model.resolution, config.train.batch_size,
                          config.train.n_critic)
  real = jax.device_put(
      jax.random.uniform(jax.random.key(0), (n_critic, batch, res, res, 3),
                         minval=-1, maxval=1), real_sharding)

  start = time.perf_counter()
  compiled = step.lower(state, real).compile()
  compile_s = time.perf_counter() - start
  state, metrics = compiled(state, real)  # warm-up
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(flags.FLAGS.steps):
    state, metrics = compiled(state, real)
  jax.block_until_ready((state, metrics))
  seconds = time.perf_counter() - start
  its = flags.FLAGS.steps / seconds
  print(f'device: {jax.device_count()} x {jax.devices()[0].device_kind}')
  print(f'config: {config.model.arch} {res}x{res} width {config.model.width} '
        f'batch {batch} n_critic {n_critic} dtype {config.model.dtype}')
  print(f'compile: {compile_s:.1f} s')
  print(f'generator iterations/s: {its:.2f}')
  print(f'images/s: {its * batch * n_critic:.0f}')


if __name__ == '__main__':
  app.run(main)
