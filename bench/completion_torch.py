"""Benchmark: our completion step against the same step in PyTorch.

What a user would write in PyTorch instead: the generator and both critics
re-implemented with `torch.nn.functional`, the weights of the same Flax
model (`models.build_models`) copied in, the same loss (paper eq. 5-8:
weighted L1 of the known pixels and of their masked gradients, prior
−D(G(z)) − Dp(G(z))), `torch.optim.Adam` on z and the clip to [-1, 1].
Before any timing, the torch nets' outputs are checked against Flax's, and
after it the final latents of both searches (same starting z) are compared.

Both sides are timed in the same run on the same batch: ours is
`completion.complete` (blend off, its default loop for the backend), theirs
the loop below; each is timed on its second call and reports Adam steps/s
(every step updates all N images). The process reuses freed memory as the
jaxinpaint CLIs do (`host_memory.reuse_freed_memory`, both sides alike);
`--glibc-default` times both with glibc's default allocator settings.

  python bench/completion_torch.py                  # width 16 and 32, 8 images
  python bench/completion_torch.py --settings 16x8,16x32 --steps 30
  python bench/completion_torch.py --glibc-default

Needs the bench-only extra: `pip install -e .[bench-torch]`.
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxinpaint import completion, host_memory, models
from jaxinpaint.data import masks
from jaxinpaint.ops import image_ops
from jaxinpaint.training import config_schema

# The port of G, D and Dp, shared with bench/train_step_torch.py.
from torch_nets import check_port, nchw, perturbed, torch_nets

def _shift(x, step, dim):
  """out[i] = x[i + step] along `dim`, zero outside (as image_ops._shift)."""
  out = torch.zeros_like(x)
  n = x.shape[dim]
  if step > 0:
    out.narrow(dim, 0, n - step).copy_(x.narrow(dim, step, n - step))
  else:
    out.narrow(dim, -step, n + step).copy_(x.narrow(dim, 0, n + step))
  return out


def masked_gradients(x, known):
  """image_ops.masked_gradients for NCHW: central, forward, backward or 0."""
  grads = []
  for dim in (2, 3):
    k_prev, k_next = _shift(known, -1, dim), _shift(known, 1, dim)
    x_prev, x_next = _shift(x, -1, dim), _shift(x, 1, dim)
    grads.append(torch.where(
        k_prev & k_next, (x_next - x_prev) * 0.5,
        torch.where(known & k_next, x_next - x,
                    torch.where(known & k_prev, x - x_prev,
                                torch.zeros_like(x)))))
  return grads


class TorchLoss:
  """Eq. 5-8 summed over the batch (each image's loss depends on its own z,
  so the gradient of the sum is every image's own gradient). The terms of y
  do not depend on z and are computed once."""

  def __init__(self, nets, y, mask, weights, spec):
    self.generator, self.critics = nets[0], nets[1:]
    self.spec = spec
    self.mask = mask.expand_as(y)
    self.known = self.mask > 0.5
    self.weights = weights
    self.y = self.mask * torch.where(mask > 0, y, torch.zeros_like(y))
    self.grads_y = [self.mask * g for g in masked_gradients(self.y,
                                                            self.known)]

  def per_image(self, z):
    s, m, w = self.spec, self.mask, self.weights
    image = self.generator(z)
    loss = s.alpha * (w * (m * image - self.y).abs()).sum(dim=(1, 2, 3))
    for g, g_y in zip(masked_gradients(image, self.known), self.grads_y):
      loss = loss + s.beta * (w * (m * g - g_y).abs()).sum(dim=(1, 2, 3))
    return loss - s.eta * sum(critic(image) for critic in self.critics)


def torch_search(loss, z0, options: completion.Options, autocast=None):
  """Adam on z, clipped to [-1, 1] after every step; returns final z.

  autocast: None (float32), or a dtype such as torch.bfloat16 for the nets
  (`torch.autocast`: z, Adam and the loss stay float32, as Options.dtype).
  """
  z = z0.clone().requires_grad_(True)
  opt = torch.optim.Adam([z], lr=options.learning_rate,
                         betas=(options.b1, options.b2), eps=1e-8)
  nets_dtype = lambda: torch.autocast(z.device.type, dtype=autocast,
                                      enabled=autocast is not None)
  for _ in range(options.steps):
    opt.zero_grad(set_to_none=True)
    with nets_dtype():
      per_image = loss.per_image(z)
    per_image.sum().backward()
    opt.step()
    with torch.no_grad():
      z.clamp_(-1.0, 1.0)
  with torch.no_grad(), nets_dtype():  # as `complete`: final loss and G(ẑ)
    loss.per_image(z)
    loss.generator(z)
  return z.detach()


def _smooth_images(rng, n, s):
  coarse = rng.uniform(-1, 1, (n, s // 8 + 1, s // 8 + 1, 3))
  up = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)[:, :s, :s]
  return np.clip(up + 0.1 * rng.normal(size=up.shape), -1,
                 1).astype(np.float32)


def timed(fn):
  """(result, seconds) of the second call; the first compiles or warms up."""
  fn()
  t0 = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - t0


def compare(width, n, args):
  c = config_schema.base_config()
  c.model.resolution, c.model.width = args.resolution, width
  variables = jax.device_put(perturbed(models.random_variables(c.model), 0))
  model = models.Model.from_config(c.model, variables)
  nets = torch_nets(variables)
  # The nets completion runs (the inference form), against the plain port.
  check_port(model.nets, variables, nets, c.model, args.port_tol)

  s = args.resolution
  y = _smooth_images(np.random.default_rng(0), n, s)
  mask = masks.center_mask(n, s, s)
  keys = completion.image_keys(0, np.arange(n))
  spec = completion.get_loss('paper')
  options = completion.Options(steps=args.steps, blend=False)
  weights = image_ops.window_weights(jnp.asarray(mask), options.window)
  # Both searches start from the same latents: `complete`'s own.
  z0 = np.stack([completion.initial_latents(k, 1, model.z_dim, model.arch,
                                            options)[0] for k in keys])

  def ours():
    return jax.block_until_ready(completion.complete(
        model, y, mask, keys, spec=spec, options=options))

  loss = TorchLoss(nets, nchw(y), nchw(mask), nchw(weights), spec)
  ours_out, t_ours = timed(ours)
  ours_rate = args.steps / t_ours
  line = f'width {width:3d}, {n:3d} images: jaxinpaint {ours_rate:6.2f} steps/s'
  for threads in args.torch_threads:
    torch.set_num_threads(threads)
    theirs_z, t_theirs = timed(lambda: torch_search(loss, torch.from_numpy(z0), options))
    theirs_rate = args.steps / t_theirs
    line += (f' | PyTorch, {threads} thread(s) {theirs_rate:6.2f} steps/s, '
             f'ours/theirs {ours_rate / theirs_rate:.2f}x')
  # Same start, same loss: the searches differ by float rounding only,
  # which Adam (nearly sign(gradient) at small gradients) can grow a little.
  dz = np.abs(np.asarray(ours_out['z']) - theirs_z.numpy()).max()
  print(f'{line} | max |z_ours - z_torch| {dz:.1e}', flush=True)


def main():
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='\n'.join(__doc__.splitlines()[2:]))
  parser.add_argument('--settings', default='16x8,32x8',
                      help='comma-separated WIDTHxIMAGES pairs')
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--resolution', type=int, default=64)
  parser.add_argument('--port-tol', type=float, default=1e-4,
                      help='largest |torch - flax| output difference allowed')
  parser.add_argument('--torch-threads', default=None,
                      help='comma-separated thread counts to time PyTorch '
                      'with (default: its own default, then 1: on a busy '
                      'CPU its OpenMP threads can be far slower than one)')
  parser.add_argument('--glibc-default', action='store_true',
                      help="keep glibc's allocator settings instead of "
                      "reusing freed memory as the jaxinpaint CLIs do")
  args = parser.parse_args()
  default_threads = torch.get_num_threads()
  try:
    args.torch_threads = ([int(t) for t in args.torch_threads.split(',')]
                          if args.torch_threads else
                          sorted({default_threads, 1}, reverse=True))
  except ValueError:
    parser.error(f'--torch-threads {args.torch_threads!r}: expected '
                 'comma-separated integers such as 2,1')
  try:
    settings = [tuple(int(v) for v in pair.split('x'))
                for pair in args.settings.split(',')]
  except ValueError:
    parser.error(f'--settings {args.settings!r}: expected WIDTHxIMAGES '
                 'pairs such as 16x8,32x8')
  reused = not args.glibc_default and host_memory.reuse_freed_memory()
  print(f'jax {jax.__version__} on {jax.devices()[0].device_kind}, torch '
        f'{torch.__version__} ({default_threads} threads by default); '
        f'{args.resolution}x{args.resolution}, paper loss, {args.steps} '
        'Adam steps, 1 restart; host memory: '
        + ('freed memory reused (as the CLIs)' if reused else
           "glibc's default settings"))
  for width, n in settings:
    compare(width, n, args)


if __name__ == '__main__':
  main()
