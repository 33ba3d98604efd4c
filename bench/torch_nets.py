"""G, D and Dp of `models.build_models` (the WGAN, plain re-sampling order)
in PyTorch, from the same Flax variables: the port the PyTorch benchmarks
share (bench/completion_torch.py, bench/train_step_torch.py).

Parameters are copied once into nested dicts of torch tensors (conv kernels
HWIO → OIHW; images NCHW), and the nets are plain functions of them, so a
training step can ask for their gradients and Adam can update them in place.
`check_port` compares the nets' outputs with Flax's before any timing.

Needs the bench-only extra: `pip install -e .[bench-torch]`.
"""
import jax
import numpy as np
import torch
import torch.nn.functional as F

# Flax's defaults, which the port must share.
BATCH_NORM_EPS = 1e-5
BATCH_NORM_MOMENTUM = 0.9  # models.Generator.bn_momentum
LAYER_NORM_EPS = 1e-6


def _t(a):
  return torch.from_numpy(np.array(a, np.float32))


def nchw(x):
  """NHWC numpy/jax images as a contiguous NCHW float32 torch tensor."""
  return _t(x).permute(0, 3, 1, 2).contiguous()


def to_torch(variables):
  """A Flax variable tree as torch tensors, conv kernels HWIO → OIHW."""
  def convert(leaf):
    x = _t(leaf)
    return x.permute(3, 2, 0, 1).contiguous() if x.ndim == 4 else x
  return jax.tree.map(convert, variables)


def to_flax(tree):
  """The inverse of `to_torch`: numpy float32, conv kernels OIHW → HWIO."""
  def convert(leaf):
    x = leaf.detach().float().cpu()
    x = x.permute(2, 3, 1, 0) if x.ndim == 4 else x
    return x.contiguous().numpy()
  return jax.tree.map(convert, tree)


def place(tree, device, channels_last=False):
  """The tensors of `tree` on `device`; 4-d kernels in channels_last memory
  format if asked (cuDNN's fast NHWC convolutions)."""
  def move(x):
    x = x.to(device)
    if channels_last and x.ndim == 4:
      x = x.contiguous(memory_format=torch.channels_last)
    return x
  return jax.tree.map(move, tree)


def conv(params, x):
  """Flax nn.Conv with 'SAME' padding (odd kernels, stride 1), NCHW."""
  kernel = params['kernel']
  return F.conv2d(x, kernel, params['bias'], padding=kernel.shape[-1] // 2)


def dense(params, x):
  return torch.addmm(params['bias'], x, params['kernel'])


def batch_norm(params, stats, x):
  """Inference mode: the running statistics, as completion uses G."""
  return F.batch_norm(x, stats['mean'], stats['var'], params['scale'],
                      params['bias'], False, 0.0, BATCH_NORM_EPS)


def batch_norm_train(params, x):
  """Training mode, as Flax's: normalized by the batch's mean and biased
  variance over (N, H, W); returns (y, {'mean', 'var'} of the batch), the
  statistics in float32 and outside the graph (they only feed the running
  averages)."""
  y = F.batch_norm(x, None, None, params['scale'], params['bias'], True, 0.0,
                   BATCH_NORM_EPS)
  with torch.no_grad():
    var, mean = torch.var_mean(x.float(), dim=(0, 2, 3), unbiased=False)
  return y, {'mean': mean, 'var': var}


def layer_norm(params, x):
  """Normalized over (C, H, W) of each example, scaled per channel."""
  shape = (1, -1, 1, 1)
  return (F.layer_norm(x, x.shape[1:], eps=LAYER_NORM_EPS)
          * params['scale'].view(shape) + params['bias'].view(shape))


def upsample(x):
  return F.interpolate(x, scale_factor=2, mode='nearest')


def _blocks(params, prefix):
  return sorted((k for k in params if k.startswith(prefix)),
                key=lambda k: int(k.rsplit('_', 1)[1]))


class TorchGenerator(torch.nn.Module):
  """`models.Generator`: z (N, z_dim) → (N, 3, R, R); `forward` in inference
  mode (running statistics), `train_forward` in training mode."""

  def __init__(self, variables):
    super().__init__()
    variables = to_torch(variables)
    self.params, self.stats = variables['params'], variables['batch_stats']
    self.blocks = _blocks(self.params, 'UpBlock_')

  def _run(self, z, norm):
    p = self.params
    x = dense(p['Dense_0'], z)
    x = x.view(z.shape[0], 4, 4, -1).permute(0, 3, 1, 2)  # Flax is NHWC
    for name in self.blocks:
      bp = p[name]
      # The 1x1 shortcut before the up-sampling, as models.UpBlock.
      shortcut = upsample(conv(bp['Conv_0'], x))
      h = F.relu(norm((name, 'BatchNorm_0'), x))
      h = conv(bp['Conv_1'], upsample(h))
      h = F.relu(norm((name, 'BatchNorm_1'), h))
      x = shortcut + conv(bp['Conv_2'], h)
    x = F.relu(norm(('BatchNorm_0',), x))
    return torch.tanh(conv(p['Conv_0'], x).float())

  def forward(self, z):
    def norm(path, x):
      return batch_norm(_get(self.params, path), _get(self.stats, path), x)
    return self._run(z, norm)

  def train_forward(self, z):
    """(images, the batch statistics of every BatchNorm, a tree like
    `self.stats`)."""
    batch_stats = {}

    def norm(path, x):
      y, stats = batch_norm_train(_get(self.params, path), x)
      node = batch_stats
      for key in path[:-1]:
        node = node.setdefault(key, {})
      node[path[-1]] = stats
      return y
    return self._run(z, norm), batch_stats


def _get(tree, path):
  for key in path:
    tree = tree[key]
  return tree


def _down_block(p, x):
  shortcut = conv(p['Conv_0'], F.avg_pool2d(x, 2))
  h = conv(p['Conv_1'], F.relu(layer_norm(p['LayerNorm_0'], x)))
  h = conv(p['Conv_2'], F.relu(layer_norm(p['LayerNorm_1'], h)))
  return shortcut + F.avg_pool2d(h, 2)


class TorchCritic(torch.nn.Module):
  """`models.Critic`: (N, 3, R, R) → (N,) float32."""

  def __init__(self, variables):
    super().__init__()
    self.params = to_torch(variables)['params']
    self.blocks = _blocks(self.params, 'DownBlock_')

  def forward(self, x):
    x = conv(self.params['Conv_0'], x)
    for name in self.blocks:
      x = _down_block(self.params[name], x)
    x = F.relu(x).permute(0, 2, 3, 1).flatten(1)  # Flax flattens NHWC
    return dense(self.params['Dense_0'], x)[:, 0].float()


class TorchPatchCritic(torch.nn.Module):
  """`models.PatchCritic`: (N, 3, R, R) → mean of the patch map, (N,)."""

  def __init__(self, variables):
    super().__init__()
    self.params = to_torch(variables)['params']
    self.blocks = _blocks(self.params, 'blocks_')

  def forward(self, x):
    x = conv(self.params['stem'], x)
    for name in self.blocks:
      x = _down_block(self.params[name], x)
    return conv(self.params['head'], F.relu(x)).float().mean(dim=(1, 2, 3))


def torch_nets(variables):
  """(G, D, Dp) of the Flax variables {'generator', 'critic',
  'patch_critic'}."""
  return (TorchGenerator(variables['generator']),
          TorchCritic(variables['critic']),
          TorchPatchCritic(variables['patch_critic']))


def perturbed(variables, seed):
  """Random norm scales, biases and BN statistics, so that the port checks
  also see them (models.random_variables sets them to 1 and 0)."""
  rng = np.random.default_rng(seed)

  def perturb(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      return leaf
    if name in ('scale', 'var'):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    return rng.normal(0, 0.1, leaf.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(perturb, variables)


def check_port(nets, variables, torch_nets_, model_config, tol):
  """Max |torch − Flax| of G, D and Dp on random inputs; exits if above tol."""
  rng = np.random.default_rng(1)
  z = rng.normal(size=(4, model_config.z_dim)).astype(np.float32)
  x = np.tanh(rng.normal(size=(4, model_config.resolution,
                               model_config.resolution, 3))).astype(np.float32)
  ours = [np.asarray(nets['generator'].apply(variables['generator'],
                                             z)).transpose(0, 3, 1, 2),
          np.asarray(nets['critic'].apply(variables['critic'], x)),
          np.asarray(nets['patch_critic'].apply(variables['patch_critic'],
                                                x))]
  with torch.no_grad():
    theirs = [torch_nets_[0](_t(z)), torch_nets_[1](nchw(x)),
              torch_nets_[2](nchw(x))]
  diffs = [float(np.abs(a - b.numpy()).max()) for a, b in zip(ours, theirs)]
  print('port check, max |torch - flax|: G %.1e, D %.1e, Dp %.1e' %
        tuple(diffs))
  if max(diffs) > tol:
    raise SystemExit(f'the torch port differs from Flax by {max(diffs):.1e} '
                     f'> {tol:.0e}: not timing different nets')
  return diffs
