"""Ours against PyTorch on one GPU: training and completion, FLOPs, profile.

scripts/gpu_bench.sh runs each mode in its own process (JAX preallocates
GPU memory; one framework at a time), each appending JSON lines to --json:
  peak            bf16 matrix-product rate (jnp.dot, --matmul N, random
                  data): the ceiling the FLOP fractions are taken of;
  jax-train       ours: training iterations/s (bf16, data on the device,
                  `training.build_train_functions`), FLOPs per iteration
                  from XLA's cost analysis; --trace DIR: a jax.profiler
                  trace of --trace-steps more steps at the first width;
  jax-complete    ours: completion of --images images, --csteps Adam steps
                  (bf16, one lax.scan), FLOPs per step likewise;
  torch-train     PyTorch's training step (bench/train_step_torch.py), its
                  variants;
  torch-complete  PyTorch's completion step (bench/completion_torch.py),
                  bf16 autocast;
  table           the rows as one table (Markdown), printed and written to
                  --table; each PyTorch row takes the FLOPs of the same
                  computation from our row (same networks and batch).

  python bench/gpu_bench.py jax-train --widths 8 --resolution 32 --batch 8 \\
      --steps 2 --json /tmp/rows.jsonl            # a CPU try
"""
import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent


def _append(path, row):
  print(json.dumps(row), flush=True)
  if path:
    with open(path, 'a') as f:
      f.write(json.dumps(row) + '\n')


def _flops(cost):
  """FLOPs of a cost analysis (a dict, or a list of one per program)."""
  if isinstance(cost, (list, tuple)):
    return float(sum(c.get('flops', 0.0) for c in cost))
  return float((cost or {}).get('flops', 0.0))


def _device_name():
  import jax
  return jax.devices()[0].device_kind


def matmul_peak(args):
  import jax
  import jax.numpy as jnp
  n = args.matmul
  k1, k2 = jax.random.split(jax.random.key(0))
  a = jax.random.normal(k1, (n, n), jnp.bfloat16)  # never zeros: they run
  b = jax.random.normal(k2, (n, n), jnp.bfloat16)  # faster than real data
  dot = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32
                                     ).astype(jnp.bfloat16))
  for _ in range(3):
    dot(a, b).block_until_ready()
  times = []
  for _ in range(args.matmul_reps):
    start = time.perf_counter()
    dot(a, b).block_until_ready()
    times.append(time.perf_counter() - start)
  seconds = float(np.median(times))
  _append(args.json, {'task': 'peak', 'framework': 'jax',
                      'device': _device_name(), 'n': n,
                      'tflop_per_s': 2 * n**3 / seconds / 1e12})


def _train_config(args, width):
  from jaxinpaint.training import config_schema
  c = config_schema.base_config()
  c.model.resolution, c.model.width = args.resolution, width
  c.model.dtype = args.dtype
  c.train.batch_size = args.batch
  if args.n_critic:
    c.train.n_critic = args.n_critic
  c.data.on_device = True
  return c


def train_flops(config, nets, state, batch):
  """FLOPs of one iteration by XLA's cost analysis of the unrolled step
  (a while loop's body would be counted once, whatever its trip count)."""
  import jax
  from jaxinpaint import training
  res = config.model.resolution
  real = jax.ShapeDtypeStruct(
      (config.train.n_critic, batch, res, res, 3), np.float32)
  step = jax.jit(functools.partial(training.train_step, nets=nets,
                                   config=config, critic_loop='unroll'))
  return _flops(step.lower(state, real).cost_analysis())


def jax_train(args):
  import jax
  from jaxinpaint import models, sharding, training
  mesh = sharding.training_mesh()
  for i, width in enumerate(args.widths):
    config = _train_config(args, width)
    nets = models.build_models(config.model)
    functions = training.build_train_functions(config, nets, mesh,
                                               on_device=True)
    res = config.model.resolution
    # At least one iteration's batches: device_batches draws without
    # replacement within an iteration.
    num_images = max(args.data_images, config.train.n_critic * args.batch)
    images = jax.device_put(np.random.default_rng(0).integers(
        0, 256, (num_images, res, res, 3), np.uint8),
        functions.input_sharding)
    state = functions.init()
    flops = train_flops(config, nets, state, args.batch)
    start = time.perf_counter()
    compiled = functions.step.lower(state, images).compile()
    compile_s = time.perf_counter() - start
    compiled_flops = _flops(compiled.cost_analysis())
    state, metrics = compiled(state, images)  # warm-up
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(args.steps):
      state, metrics = compiled(state, images)
    jax.block_until_ready((state, metrics))
    rate = args.steps / (time.perf_counter() - start)
    finite = all(np.isfinite(float(v)) for v in metrics.values())
    _append(args.json, {
        'task': 'train', 'framework': 'jax', 'variant': args.dtype,
        'width': width, 'batch': args.batch,
        'n_critic': config.train.n_critic, 'it_per_s': rate,
        'flops': flops, 'compiled_flops': compiled_flops,
        'compile_s': compile_s, 'finite': finite,
        'critic_loop': training.resolve_critic_loop(config.train),
        'device': _device_name()})
    if args.trace and i == 0:
      # Steps of the already compiled program only: the trace holds no
      # compilation.
      with jax.profiler.trace(args.trace, create_perfetto_trace=True):
        for _ in range(args.trace_steps):
          state, metrics = compiled(state, images)
        jax.block_until_ready((state, metrics))
      print(f'trace of {args.trace_steps} steps at width {width} in '
            f'{args.trace}', flush=True)


def _completion_inputs(args, width):
  import jax
  import jax.numpy as jnp
  from jaxinpaint import completion
  from jaxinpaint.training import config_schema
  from jaxinpaint.ops import image_ops
  from jaxinpaint.data import masks
  from jaxinpaint import models
  c = config_schema.base_config()
  c.model.resolution, c.model.width = args.resolution, width
  model = models.Model.from_config(
      c.model, jax.device_put(models.random_variables(c.model)))
  n, s = args.images, args.resolution
  rng = np.random.default_rng(0)
  coarse = rng.uniform(-1, 1, (n, s // 8 + 1, s // 8 + 1, 3))
  y = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)[:, :s, :s]
  y = np.clip(y + 0.1 * rng.normal(size=y.shape), -1, 1).astype(np.float32)
  mask = masks.center_mask(n, s, s)
  weights = image_ops.window_weights(jnp.asarray(mask), 7)
  return c, model, y, mask, weights


def completion_step_flops(model, y, mask, weights, spec, dtype):
  """FLOPs of one Adam step's loss and gradient for all images (the Adam
  update itself is a few FLOPs per latent)."""
  import jax
  from jaxinpaint import completion
  nets = completion.with_dtype(model.nets, dtype)

  def grads(z, y, mask, weights):
    def one(z, y, mask, weights):
      return jax.value_and_grad(completion.inpainting_loss, has_aux=True)(
          z, y, mask, weights, nets, model.variables, spec, model.arch)
    return jax.vmap(one)(z, y, mask, weights)

  z = jax.ShapeDtypeStruct((y.shape[0], model.z_dim), np.float32)
  return _flops(jax.jit(grads).lower(z, y, mask, weights).cost_analysis())


def jax_complete(args):
  import jax
  from jaxinpaint import completion
  for width in args.widths:
    c, model, y, mask, weights = _completion_inputs(args, width)
    keys = completion.image_keys(0, np.arange(args.images))
    spec = completion.get_loss('paper')
    flops = completion_step_flops(model, y, mask, weights, spec, args.dtype)

    def run(steps):
      options = completion.Options(steps=steps, loop='scan', blend=False,
                                   dtype=args.dtype)
      return jax.block_until_ready(completion.complete(
          model, y, mask, keys, spec=spec, options=options))

    start = time.perf_counter()
    run(args.csteps)  # compiles
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    out = run(args.csteps)
    rate = args.csteps / (time.perf_counter() - start)
    _append(args.json, {
        'task': 'complete', 'framework': 'jax',
        'variant': f'{args.dtype}, scan', 'width': width,
        'batch': args.images, 'steps': args.csteps, 'it_per_s': rate,
        'flops': flops, 'first_call_s': compile_s,
        'finite': bool(np.isfinite(np.asarray(out['final_loss'])).all()),
        'device': _device_name()})


def torch_train(args):
  sys.path.insert(0, str(BENCH))
  import train_step_torch
  import torch
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  name = (torch.cuda.get_device_name() if device == 'cuda'
          else 'cpu')
  for width in args.widths:
    for variant in args.variants:
      if variant == 'compile' and args.compile_widths and (
          width not in args.compile_widths):
        continue
      config = _train_config(args, width)
      row = {'task': 'train', 'framework': 'pytorch', 'variant': variant,
             'width': width, 'batch': args.batch,
             'n_critic': config.train.n_critic, 'device': name,
             'torch': torch.__version__}
      try:
        rate, first_s = train_step_torch.time_variant(variant, config,
                                                      args.steps, device)
        row.update(it_per_s=rate, first_call_s=first_s)
      except Exception as e:  # pylint: disable=broad-except
        # A variant that does not run (torch.compile and the double
        # backward, say) is a row of the table, not the end of the run.
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        row.update(error=f'{type(e).__name__}: {first[:160]}')
      _append(args.json, row)


def torch_complete(args):
  sys.path.insert(0, str(BENCH))
  import completion_torch
  import torch
  import torch_nets
  from jaxinpaint import completion
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  name = torch.cuda.get_device_name() if device == 'cuda' else 'cpu'
  autocast = {'bfloat16': torch.bfloat16, 'float32': None}[args.dtype]
  torch.backends.cudnn.benchmark = True  # fixed shapes
  for width in args.widths:
    c, model, y, mask, weights = _completion_inputs(args, width)
    nets = torch_nets.torch_nets(model.variables)
    for net in nets:
      net.params = torch_nets.place(net.params, device)
    nets[0].stats = torch_nets.place(nets[0].stats, device)
    to = lambda a: torch_nets.nchw(np.asarray(a)).to(device)
    loss = completion_torch.TorchLoss(nets, to(y), to(mask), to(weights),
                                      completion.get_loss('paper'))
    z0 = torch.rand((args.images, model.z_dim), device=device) * 2 - 1

    def run(steps):
      out = completion_torch.torch_search(
          loss, z0, completion.Options(steps=steps), autocast=autocast)
      if device == 'cuda':
        torch.cuda.synchronize()
      return out

    start = time.perf_counter()
    run(10)  # warm-up: cuDNN's algorithm choice, allocations
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    z = run(args.csteps)
    rate = args.csteps / (time.perf_counter() - start)
    _append(args.json, {
        'task': 'complete', 'framework': 'pytorch',
        'variant': f'{args.dtype} autocast', 'width': width,
        'batch': args.images, 'steps': args.csteps, 'it_per_s': rate,
        'first_call_s': first_s,
        'finite': bool(torch.isfinite(z).all().item()), 'device': name,
        'torch': torch.__version__})


def make_table(rows):
  """Markdown rows: each timed row with its FLOPs (ours for PyTorch's) and
  the fraction of the measured peak."""
  peaks = [r['tflop_per_s'] for r in rows if r['task'] == 'peak']
  peak = max(peaks) if peaks else None
  ours = {(r['task'], r['width']): r['flops'] for r in rows
          if r.get('framework') == 'jax' and r.get('flops')}
  device = next((r['device'] for r in rows if r.get('device')), '?')
  lines = [f'device: {device}; bf16 matmul peak measured: '
           + (f'{peak:.0f} TFLOP/s' if peak else 'not measured'), '',
           '| task | width | batch | framework | variant | it/s | '
           'GFLOP/it | TFLOP/s | % of peak |',
           '| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |']
  for r in rows:
    if r['task'] == 'peak':
      continue
    flops = ours.get((r['task'], r['width']))
    if 'error' in r:
      rate = achieved = share = '—'
      variant = f"{r['variant']} (failed: {r['error'][:60]})"
    else:
      rate, variant = f"{r['it_per_s']:.2f}", r['variant']
      tflops = flops * r['it_per_s'] / 1e12 if flops else None
      achieved = f'{tflops:.1f}' if tflops else '?'
      share = f'{100 * tflops / peak:.1f}' if tflops and peak else '?'
    unit = 'train (it = n_critic + 1 updates)' if r['task'] == 'train' else (
        f"complete ({r.get('steps', '?')} steps; it = 1 step)")
    lines.append(f"| {unit} | {r['width']} | {r['batch']} | "
                 f"{r['framework']} | {variant} | {rate} | "
                 f"{flops / 1e9:.1f} | {achieved} | {share} |"
                 if flops else
                 f"| {unit} | {r['width']} | {r['batch']} | "
                 f"{r['framework']} | {variant} | {rate} | ? | ? | ? |")
  return '\n'.join(lines)


def table(args):
  rows = []
  if Path(args.json).exists():
    rows = [json.loads(line) for line in Path(args.json).read_text(
    ).splitlines() if line.strip()]
  text = make_table(rows)
  print(text)
  if args.table:
    Path(args.table).write_text(text + '\n')


MODES = {'peak': matmul_peak, 'jax-train': jax_train,
         'jax-complete': jax_complete, 'torch-train': torch_train,
         'torch-complete': torch_complete, 'table': table}


def _ints(text):
  try:
    return [int(v) for v in text.split(',') if v]
  except ValueError:
    raise argparse.ArgumentTypeError(
        f'{text!r}: expected comma-separated integers such as 32,64'
    ) from None


def main():
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='\n'.join(__doc__.splitlines()[2:]))
  parser.add_argument('mode', choices=sorted(MODES))
  parser.add_argument('--json', help='JSON lines file the rows go to')
  parser.add_argument('--table', help='where `table` writes the table')
  parser.add_argument('--widths', type=_ints, default=[32, 64])
  parser.add_argument('--resolution', type=int, default=64)
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--n-critic', type=int, default=0,
                      help="critic updates per iteration (0: the config's, "
                      '5)')
  parser.add_argument('--steps', type=int, default=30,
                      help='timed training iterations')
  parser.add_argument('--dtype', default='bfloat16',
                      choices=['bfloat16', 'float32'])
  parser.add_argument('--data-images', type=int, default=2048,
                      help='images of the on-device set (jax-train)')
  parser.add_argument('--images', type=int, default=64,
                      help='images completed at once')
  parser.add_argument('--csteps', type=int, default=1000,
                      help='Adam steps of the completion')
  parser.add_argument('--variants', default='eager,bf16_cl,compile',
                      help='torch-train: bench/train_step_torch.py variants')
  parser.add_argument('--compile-widths', type=_ints, default=[],
                      help='torch-train: time the compile variant at these '
                      'widths only (default: all)')
  parser.add_argument('--matmul', type=int, default=8192)
  parser.add_argument('--matmul-reps', type=int, default=10)
  parser.add_argument('--trace', help='jax-train: profile into this folder')
  parser.add_argument('--trace-steps', type=int, default=20)
  args = parser.parse_args()
  args.variants = args.variants.split(',')
  if args.mode == 'table' and not args.json:
    parser.error('table: --json FILE (the rows) is required')
  MODES[args.mode](args)


if __name__ == '__main__':
  main()
