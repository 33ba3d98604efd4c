"""Benchmark: one training iteration of the paper in PyTorch, beside ours.

What a user would write in PyTorch instead of `training.train_step`: G, D
and Dp ported from the same Flax weights (bench/torch_nets.py; the plain
re-sampling convs and G's BatchNorm in training mode, as training runs
them), `n_critic` critic updates — E[D(fake)] − E[D(real)] + λ·GP on both
critics, the penalty's double backward through `torch.autograd.grad(...,
create_graph=True)` — then one generator update against −D(G(z)) − Dp(G(z)),
`torch.optim.Adam` (1e-4, β = (0, 0.9), as the config) on each side.

Variants (`--variants`):
  eager      float32, eager (cuDNN may use TF32 for convolutions on GPUs:
             PyTorch's default, `torch.backends.cudnn.allow_tf32`);
  bf16_cl    `torch.autocast` bfloat16 and channels_last tensors;
  compile    bf16_cl with `torch.compile` of G and of the critics'
             passes that need a first backward only (real, fake, G's
             update): torch.compile cannot differentiate its graphs twice
             ("torch.compile with aot_autograd does not currently support
             double backward", torch 2.13 on CPU), so compiling the whole
             step fails, and the gradient penalty's pass stays eager.

`--check` runs our step and this one once from the same weights, real
batches and random draws (`training.step_randomness`) in float32 on the CPU
and prints every loss's and parameter's relative difference (tests do the
same at a tiny width). Timing draws z and ε on the device with torch's own
generator, and feeds the same real batches every step (data on the device).

  python bench/train_step_torch.py --check --widths 8 --resolution 32
  python bench/train_step_torch.py --device cuda --widths 32,64 --batch 64
  python bench/train_step_torch.py --widths 8 --resolution 32 --batch 8 \\
      --steps 2 --threads 1                       # a CPU try

Needs the bench-only extra: `pip install -e .[bench-torch]`.
"""
import argparse
import contextlib
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxinpaint import models, training
from jaxinpaint.training import config_schema, gan_losses
import torch_nets

VARIANTS = ('eager', 'bf16_cl', 'compile')


def _leaves(tree):
  return jax.tree.leaves(tree)


def _grad_norm(grads):
  return torch.sqrt(sum(g.float().square().sum() for g in grads))


class TorchTrainStep:
  """One generator iteration of `training.train_step` (WGAN-GP) in PyTorch.

  variables: Flax {'generator': {'params', 'batch_stats'}, 'critic':
    {'params'}, 'patch_critic': {'params'}}; copied, then updated in place.
  autocast: None (float32) or a dtype for `torch.autocast` (the nets run in
    it; the losses, gradient norms, Adam and the parameters stay float32).
  compile_nets: `torch.compile` G and the critics' passes that are
    differentiated once; the gradient penalty's pass stays eager.
  """

  def __init__(self, variables, train_config, *, device='cpu',
               channels_last=False, autocast=None, compile_nets=False):
    self.g, self.d, self.dp = torch_nets.torch_nets(variables)
    self.critics = (self.d, self.dp)
    maybe_compile = torch.compile if compile_nets else (lambda f: f)
    self.generate = maybe_compile(self.g.train_forward)
    # For the scores of real and fake images and G's update.
    self.scores = tuple(maybe_compile(c.forward) for c in self.critics)
    for net in (self.g, *self.critics):
      net.params = torch_nets.place(net.params, device, channels_last)
      for p in _leaves(net.params):
        p.requires_grad_(True)
    self.g.stats = torch_nets.place(self.g.stats, device)
    self.device = torch.device(device)
    self.channels_last = channels_last
    self.autocast = autocast
    self.gp_weight = train_config.gp_weight
    adam = functools.partial(torch.optim.Adam, lr=train_config.learning_rate,
                             betas=(train_config.b1, train_config.b2),
                             eps=1e-8)  # optax.adam's
    self.g_params = _leaves(self.g.params)
    self.d_params = [p for c in self.critics for p in _leaves(c.params)]
    self.g_opt, self.d_opt = adam(self.g_params), adam(self.d_params)
    # The per-example values the last call's losses average, detached:
    # 'real_scores', 'fake_scores', 'gp_norms' (the penalty's gradient
    # norms) of the last critic update, 'generated_scores' of G's; D's, and
    # Dp's with the prefix 'patch_'. Tests size rounding tolerances by them.
    self.terms = {}

  def _nets_dtype(self):
    if self.autocast is None:
      return contextlib.nullcontext()
    return torch.autocast(self.device.type, dtype=self.autocast)

  def _layout(self, x):
    if self.channels_last:
      return x.contiguous(memory_format=torch.channels_last)
    return x

  @staticmethod
  def _apply(opt, params, grads):
    for p, g in zip(params, grads):
      p.grad = g
    opt.step()

  def critic_update(self, real, z, gp_eps):
    """real (B, 3, R, R); z (B, z_dim); gp_eps (critics, B). Metrics as
    `training.train_step`'s of one critic iteration."""
    with torch.no_grad(), self._nets_dtype():
      fake = self._layout(self.generate(z)[0])
    total, metrics = 0.0, {}
    for critic, scores, eps, prefix in zip(self.critics, self.scores, gp_eps,
                                           ('', 'patch_')):
      eps = eps.view(-1, 1, 1, 1)
      x_hat = self._layout(eps * real + (1.0 - eps) * fake).requires_grad_(
          True)
      with self._nets_dtype():
        real_scores = scores(real)
        fake_scores = scores(fake)
        hat_scores = critic(x_hat).sum()  # differentiated twice: eager
      (grads,) = torch.autograd.grad(hat_scores, x_hat, create_graph=True)
      norm = torch.sqrt(grads.float().square().sum(dim=(1, 2, 3))
                        + gan_losses.GRAD_NORM_EPS)
      gp = (norm - 1.0).square().mean()
      wasserstein = real_scores.mean() - fake_scores.mean()
      self.terms.update({prefix + 'real_scores': real_scores.detach(),
                         prefix + 'fake_scores': fake_scores.detach(),
                         prefix + 'gp_norms': norm.detach()})
      loss = -wasserstein + self.gp_weight * gp
      metrics.update({prefix + 'critic_loss': loss,
                      prefix + 'wasserstein': wasserstein, prefix + 'gp': gp})
      total = total + loss
    grads = torch.autograd.grad(total, self.d_params)
    self._apply(self.d_opt, self.d_params, grads)
    metrics['d_grad_norm'] = _grad_norm(grads)
    return metrics

  def generator_update(self, z):
    with self._nets_dtype():
      fake, batch_stats = self.generate(z)
      fake = self._layout(fake)
      generated_scores = [scores(fake) for scores in self.scores]
      loss = -sum(s.mean() for s in generated_scores)
    grads = torch.autograd.grad(loss, self.g_params)
    for prefix, s in zip(('', 'patch_'), generated_scores):
      self.terms[prefix + 'generated_scores'] = s.detach()
    self._apply(self.g_opt, self.g_params, grads)
    m = torch_nets.BATCH_NORM_MOMENTUM
    with torch.no_grad():  # Flax's running averages
      for old, new in zip(_leaves(self.g.stats), _leaves(batch_stats)):
        old.mul_(m).add_(new, alpha=1.0 - m)
    return {'g_loss': loss, 'g_grad_norm': _grad_norm(grads)}

  def step(self, real, critic_z, gp_eps, generator_z):
    """real (n_critic, B, 3, R, R); critic_z (n_critic, B, z_dim); gp_eps
    (n_critic, critics, B); generator_z (B, z_dim). Returns the last critic
    iteration's metrics and the generator's, as `training.train_step`."""
    for real_i, z_i, eps_i in zip(real, critic_z, gp_eps):
      metrics = self.critic_update(self._layout(real_i), z_i, eps_i)
    metrics.update(self.generator_update(generator_z))
    # Detached: a metric holding its graph would keep it (and its
    # activations' memory) alive until the next step.
    return {k: v.detach() for k, v in metrics.items()}

  def variables(self):
    """The current weights as Flax variables (numpy, float32)."""
    return {'generator': {'params': torch_nets.to_flax(self.g.params),
                          'batch_stats': torch_nets.to_flax(self.g.stats)},
            'critic': {'params': torch_nets.to_flax(self.d.params)},
            'patch_critic': {'params': torch_nets.to_flax(self.dp.params)}}


def is_zero_gradient(name):
  """Whether a parameter (a `jax.tree_util.keystr` path) is one of G's conv
  biases in its up-sampling blocks, whose gradient is zero by construction:
  each adds a per-channel constant that reaches only BatchNorms (which
  remove it) and 1x1 shortcut convs (which map it to another per-channel
  constant), so their updates are Adam's response to rounding noise."""
  return ("['generator']['params']['UpBlock_" in name
          and "['Conv_" in name and name.endswith("['bias']"))


def _relative(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def state_variables(state):
  """The Flax variables of a TrainState's networks (host numpy)."""
  state = jax.device_get(state)
  return {'generator': {'params': state.g_params,
                        'batch_stats': state.g_stats},
          **{name: {'params': p} for name, p in state.d_params.items()}}


def one_iteration_both(config, seed=0, critic_loop='unroll'):
  """One iteration of ours and of TorchTrainStep (float32, CPU) from the
  same weights (norms, biases and BN statistics perturbed), real batches
  and random draws.

  Returns {'before', 'ours', 'theirs': Flax variables (numpy) before and
  after each side's step; 'ours_metrics', 'theirs_metrics': {name: float}}.
  """
  nets = models.build_models(config.model)
  # Filled in numpy (no Flax init to compile), then a TrainState as
  # training.init_state makes one.
  variables = torch_nets.perturbed(
      models.random_variables(config.model, seed), seed + 1)
  g_params = variables['generator']['params']
  d_params = {k: variables[k]['params'] for k in ('critic', 'patch_critic')}
  opt = training.make_optimizer(config.train)
  state = training.TrainState(
      step=jnp.zeros((), jnp.int32),
      rng=jax.random.key_data(jax.random.key(seed)), g_params=g_params,
      g_stats=variables['generator']['batch_stats'],
      g_stats_eval=variables['generator']['batch_stats'], d_params=d_params,
      d_stats={}, g_opt_state=opt.init(g_params),
      d_opt_state=opt.init(d_params))
  before = state_variables(state)
  res, batch = config.model.resolution, config.train.batch_size
  n_critic = config.train.n_critic
  rng = np.random.default_rng(seed)
  real = rng.uniform(-1, 1, (n_critic, batch, res, res, 3)).astype(
      np.float32)
  draws = jax.device_get(training.step_randomness(state, config, batch))
  step = jax.jit(functools.partial(training.train_step, nets=nets,
                                   config=config, critic_loop=critic_loop))
  new_state, ours = jax.device_get(step(state, real))

  theirs_step = TorchTrainStep(before, config.train)
  theirs = theirs_step.step(
      torch_nets.nchw(real.reshape((-1, res, res, 3))).view(
          n_critic, batch, 3, res, res),
      *(torch.tensor(np.asarray(draws[k], np.float32))
        for k in ('critic_z', 'gp_eps', 'generator_z')))
  return {'before': before, 'ours': state_variables(new_state),
          'theirs': theirs_step.variables(),
          'ours_metrics': {k: float(v) for k, v in ours.items()},
          'theirs_metrics': {k: float(v.detach()) for k, v in theirs.items()}}


def relative_differences(result):
  """{name: ‖torch − ours‖ / ‖ours‖} of every metric, parameter and
  running statistic of `one_iteration_both`'s result."""
  diffs = {k: _relative(result['theirs_metrics'][k], v)
           for k, v in result['ours_metrics'].items()}
  flat_ours = jax.tree_util.tree_leaves_with_path(result['ours'])
  flat_theirs = jax.tree.leaves(result['theirs'])
  diffs.update({jax.tree_util.keystr(path): _relative(b, a)
                for (path, a), b in zip(flat_ours, flat_theirs)})
  return diffs


# ----------------------------------------------------------------------------
# Timing.


def make_step(variant, variables, train_config, device):
  """(TorchTrainStep, step function) of a variant."""
  kwargs = {'eager': {},
            'bf16_cl': dict(channels_last=True, autocast=torch.bfloat16),
            'compile': dict(channels_last=True, autocast=torch.bfloat16,
                            compile_nets=True)}
  trainer = TorchTrainStep(variables, train_config, device=device,
                           **kwargs[variant])
  return trainer, trainer.step


def _sync(device):
  if torch.device(device).type == 'cuda':
    torch.cuda.synchronize()


def time_variant(variant, config, steps, device, seed=0):
  """(iterations/s, first-call seconds) of `steps` steps after two warm-up
  ones; the draws come from torch's generator on the device, the real
  batches are the same device tensors every step."""
  c = config.model
  # Fixed shapes: let cuDNN time its algorithms, as a PyTorch user would.
  torch.backends.cudnn.benchmark = True
  variables = models.random_variables(c, seed)
  _, step = make_step(variant, variables, config.train, device)
  n_critic, batch = config.train.n_critic, config.train.batch_size
  gen = torch.Generator(device=device).manual_seed(seed)
  real = torch.rand((n_critic, batch, 3, c.resolution, c.resolution),
                    generator=gen, device=device) * 2 - 1

  def draws():
    return (torch.randn((n_critic, batch, c.z_dim), generator=gen,
                        device=device),
            torch.rand((n_critic, 2, batch), generator=gen, device=device),
            torch.randn((batch, c.z_dim), generator=gen, device=device))

  start = time.perf_counter()
  metrics = step(real, *draws())
  metrics = step(real, *draws())
  _sync(device)
  first_s = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(steps):
    metrics = step(real, *draws())
  _sync(device)
  rate = steps / (time.perf_counter() - start)
  if not all(torch.isfinite(v).item() for v in metrics.values()):
    raise RuntimeError(f'{variant}: a non-finite loss {metrics}')
  return rate, first_s


def _config(args, width):
  c = config_schema.base_config()
  c.model.resolution, c.model.width = args.resolution, width
  c.train.batch_size = args.batch
  if args.n_critic:
    c.train.n_critic = args.n_critic
  return c


def main():
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='\n'.join(__doc__.splitlines()[2:]))
  parser.add_argument('--widths', default='32',
                      help='comma-separated base widths')
  parser.add_argument('--resolution', type=int, default=64)
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--n-critic', type=int, default=0,
                      help="critic updates per iteration (0: the config's)")
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--device', default='cpu')
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--check', action='store_true',
                      help='compare one iteration with ours (CPU, float32) '
                      'instead of timing')
  parser.add_argument('--json', help='append one JSON line per result here')
  parser.add_argument('--threads', type=int, default=0,
                      help="torch's CPU threads (0: its default; on a busy "
                      'CPU its OpenMP threads can be far slower than one)')
  args = parser.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  try:
    widths = [int(w) for w in args.widths.split(',')]
  except ValueError:
    parser.error(f'--widths {args.widths!r}: expected integers such as 32,64')
  variants = args.variants.split(',')
  unknown = set(variants) - set(VARIANTS)
  if unknown:
    parser.error(f'--variants: unknown {sorted(unknown)}; expected some of '
                 f'{",".join(VARIANTS)}')
  print(f'torch {torch.__version__} on {args.device}'
        + (f' ({torch.cuda.get_device_name()})' if args.device == 'cuda'
           else f' ({torch.get_num_threads()} threads)'), flush=True)
  for width in widths:
    config = _config(args, width)
    if args.check:
      diffs = relative_differences(one_iteration_both(config))
      for name, d in diffs.items():
        print(f'  {name:70s} {d:.1e}')
      # G's conv biases have a zero gradient by construction (a per-channel
      # constant that reaches only BatchNorms): Adam's first step turns
      # their rounding noise into ±lr-sized updates, different on each side.
      print(f'width {width}: largest relative difference '
            f'{max(diffs.values()):.1e}; without G\'s conv biases '
            f'{max(d for k, d in diffs.items() if not is_zero_gradient(k)):.1e}')
      continue
    for variant in variants:
      row = {'framework': 'pytorch', 'task': 'train', 'variant': variant,
             'width': width, 'batch': args.batch,
             'n_critic': config.train.n_critic, 'device': args.device}
      try:
        rate, first_s = time_variant(variant, config, args.steps, args.device)
        row.update(it_per_s=rate, first_s=first_s)
        print(f'width {width:3d} batch {args.batch} {variant:8s} '
              f'{rate:8.2f} it/s (first two steps {first_s:.1f} s)',
              flush=True)
      except Exception as e:  # pylint: disable=broad-except
        # A variant that does not run here (torch.compile's double
        # backward, say) is a row of the table, not the end of the run.
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        row.update(error=f'{type(e).__name__}: {first[:200]}')
        print(f'width {width:3d} {variant:8s} failed: {row["error"]}',
              flush=True)
      if args.json:
        with open(args.json, 'a') as f:
          f.write(json.dumps(row) + '\n')


if __name__ == '__main__':
  main()
