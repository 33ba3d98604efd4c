"""bench/train_step_torch.py and bench/torch_nets.py: the PyTorch port of the
networks and of one training iteration agree with ours (float32, CPU).

Skipped where PyTorch is absent (the bench-torch extra); CI installs it.
"""
import math
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip(
    'torch', reason='PyTorch is not installed (pip install -e .[bench-torch])')

from helpers import REPO, load_config  # noqa: E402
from jaxinpaint import models  # noqa: E402

sys.path.insert(0, str(REPO / 'bench'))
import torch_nets  # noqa: E402
import train_step_torch  # noqa: E402

TOL = 1e-4
# One thread: on a shared CPU, torch's OpenMP threads can be far slower.
torch.set_num_threads(1)


def _tiny_config():
  """Width 8 at 32x32, batch 8, two critic updates (configs/tiny.py)."""
  return load_config('tiny')


@pytest.fixture(scope='module')
def both():
  # scan: the critic update compiled once (the same arithmetic as unroll).
  return train_step_torch.one_iteration_both(_tiny_config(),
                                             critic_loop='scan')


def _flat(tree):
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_every_loss_agrees(both):
  ours, theirs = both['ours_metrics'], both['theirs_metrics']
  assert set(ours) == set(theirs) == {
      'critic_loss', 'wasserstein', 'gp', 'patch_critic_loss',
      'patch_wasserstein', 'patch_gp', 'd_grad_norm', 'g_loss', 'g_grad_norm'}
  for name, value in ours.items():
    assert np.isfinite(value) and value != 0, name
    assert abs(theirs[name] - value) <= TOL * abs(value), (
        name, theirs[name], value)


def test_every_updated_parameter_agrees(both):
  """Each network's updated parameters (and G's running statistics) agree to
  a relative 1e-4, each tensor to 1e-3.

  Per element they need not: Adam with b1 = 0 takes a step of about ±lr on
  any gradient that is not far below rounding, so an element whose true
  gradient is ~0 (cancelling terms) moves by up to ~lr either way, on each
  side its own way (one such element of 64 differs by 6e-5 here).
  """
  before, ours, theirs = (_flat(both[k]) for k in ('before', 'ours',
                                                   'theirs'))
  assert list(ours) == list(theirs) and len(ours) > 50
  lr = _tiny_config().train.learning_rate
  groups = {}
  for name, a in ours.items():
    b = theirs[name]
    if train_step_torch.is_zero_gradient(name):
      # Adam's step on rounding noise: bounded by lr on both sides.
      for side in (a, b):
        assert np.abs(side - before[name]).max() <= 1.01 * lr, name
      continue
    assert np.linalg.norm(b - a) <= 1e-3 * np.linalg.norm(a), (
        name, np.linalg.norm(b - a) / np.linalg.norm(a))
    group = name.split(']')[0] + ']' + name.split(']')[1] + ']'
    groups.setdefault(group, []).append((a.ravel(), b.ravel()))
  assert len(groups) == 4  # G's params and statistics, D's, Dp's
  for group, pairs in groups.items():
    a, b = (np.concatenate(side) for side in zip(*pairs))
    assert np.linalg.norm(b - a) <= TOL * np.linalg.norm(a), (
        group, np.linalg.norm(b - a) / np.linalg.norm(a))
  # The step did update: every parameter and running statistic moved, but
  # the biases that shift every score of a critic alike, which the WGAN-GP
  # loss does not see (E[D(fake)] − E[D(real)] cancels them, the penalty
  # does not depend on them): their gradient is exactly zero.
  unseen = ("['critic']['params']['Dense_0']['bias']",
            "['patch_critic']['params']['head']['bias']")
  for name in ours:
    if name in unseen:
      assert np.array_equal(ours[name], before[name]), name
      assert np.array_equal(theirs[name], before[name]), name
    elif "['params']" in name and not train_step_torch.is_zero_gradient(
        name):
      assert np.abs(ours[name] - before[name]).max() > 0.5 * lr, name
    if "['batch_stats']" in name:
      assert np.abs(ours[name] - before[name]).max() > 1e-3, name


def test_zero_gradient_biases_are_those_of_G():
  """is_zero_gradient names exactly G's parameters whose generator-loss
  gradient vanishes (to rounding): the exclusion above is not arbitrary."""
  c = _tiny_config()
  variables = torch_nets.perturbed(models.random_variables(c.model), 0)
  nets = models.build_models(c.model)
  z = np.random.default_rng(0).normal(size=(8, c.model.z_dim)).astype(
      np.float32)

  def g_loss(g_params):
    fake, _ = nets['generator'].apply(
        {'params': g_params,
         'batch_stats': variables['generator']['batch_stats']}, z,
        train=True, mutable=['batch_stats'])
    return -sum(nets[n].apply(variables[n], fake).mean()
                for n in ('critic', 'patch_critic'))

  grads = _flat({'generator': {'params': jax.jit(jax.grad(g_loss))(
      variables['generator']['params'])}})
  largest = max(np.abs(g).max() for g in grads.values())
  for name, g in grads.items():
    if train_step_torch.is_zero_gradient(name):
      assert np.abs(g).max() <= 1e-5 * largest, name
    elif 'Conv' in name or 'Dense' in name:
      assert np.abs(g).max() > 1e-3 * largest, name


def test_port_of_the_networks_matches_flax():
  c = _tiny_config()
  variables = torch_nets.perturbed(models.random_variables(c.model), 0)
  nets = models.build_models(c.model)
  diffs = torch_nets.check_port(nets, variables,
                                torch_nets.torch_nets(variables), c.model,
                                tol=1e-5)
  assert max(diffs) <= 1e-5


def test_generator_training_mode_matches_flax():
  """G with batch statistics: images and the statistics of every BN."""
  c = _tiny_config()
  variables = torch_nets.perturbed(models.random_variables(c.model), 0)
  z = np.random.default_rng(1).normal(size=(4, c.model.z_dim)).astype(
      np.float32)
  images, updates = models.build_models(c.model)['generator'].apply(
      variables['generator'], z, train=True, mutable=['batch_stats'])
  g = torch_nets.TorchGenerator(variables['generator'])
  with torch.no_grad():
    theirs, stats = g.train_forward(torch.tensor(z))
  np.testing.assert_allclose(theirs.permute(0, 2, 3, 1).numpy(),
                             np.asarray(images), atol=1e-5)
  # Flax stores m·old + (1 − m)·batch; recover the batch statistics.
  m = torch_nets.BATCH_NORM_MOMENTUM
  old = _flat(variables['generator']['batch_stats'])
  new = _flat(updates['batch_stats'])
  batch = _flat(stats)
  assert set(batch) == set(new)
  for name in new:
    np.testing.assert_allclose(m * old[name] + (1 - m) * batch[name],
                               new[name], rtol=1e-5, atol=1e-6)


# bfloat16 keeps 8 significant bits: rounding to it errs by at most
# U = 2^-8 of the value.
U = 2.0**-8


def _roundings(blocks_g, blocks_critic, backward=False):
  """How many bfloat16 roundings lie on the path z → G → a critic's score
  under autocast (where every op stores its result in bfloat16): a conv or
  dense rounds its kernel, bias and output (3), a norm, pool, tanh or
  residual sum its output (1); ReLU, nearest up-sampling and the final
  float32 mean are exact. G: z and Dense (4), per up-block 3 convs, 2
  BatchNorms and the sum (12), the last BatchNorm, conv and tanh (5). A
  critic: the image and first conv (4), per down-block 3 convs, 2 pools, 2
  LayerNorms and the sum (14), the last dense or conv (3). Plus one per
  critic weight tensor (3 per block, 2 more): where a critic gradient is
  within rounding of zero, the two sides' Adam steps (±lr, ≪ the weights'
  1/√fan_in) differ, which perturbs a few % of a layer's weights by less
  than one rounding does. The penalty's gradient also goes back through
  the critic, rounding as many values again."""
  critic = 4 + 14 * blocks_critic + 3
  count = 4 + 12 * blocks_g + 5 + critic + 3 * blocks_critic + 2
  return count + critic if backward else count


def _rounding_factor(roundings):
  """c such that a value computed through `roundings` bfloat16 roundings
  errs by at most c·U of its magnitude. Each rounding multiplies a value by
  1 + δ, |δ| ≤ U, δ uniform and of independent sign (variance U²/3); the
  nets are normalized (LayerNorm, BatchNorm, 1/√fan_in kernels), so a
  layer passes its input's relative error on with a gain of about 1, and
  the errors add as a random walk: standard deviation √(n/3)·U. c allows
  4 standard deviations (exceeded with probability < 1e-4)."""
  return 4 * math.sqrt(roundings / 3)


def _bf16_tolerances(trainer, gp_weight):
  """{loss: the largest |bfloat16 − float32| rounding explains}, from the
  float32 step's per-example terms (`TorchTrainStep.terms`).

  A loss adds terms of either sign (g_loss = −E[D(G(z))] − E[Dp(G(z))]:
  scores ~±1 whose sum is ~0.1), so its rounding error is bounded by the
  terms' magnitudes, not by its value: each score errs by at most
  c·U·|score|. The penalty E[(n − 1)²] of gradient norms n errs by
  2(n − 1)·Δn with |Δn| ≤ c'·U·n (c' for the longer path, back through the
  critic): E[2|n − 1|·n]·c'·U.
  """
  def mean_abs(x):
    return float(x.abs().mean())

  blocks_g, blocks_critic = len(trainer.g.blocks), len(trainer.d.blocks)
  assert len(trainer.dp.blocks) == blocks_critic
  c = _rounding_factor(_roundings(blocks_g, blocks_critic))
  c_penalty = _rounding_factor(
      _roundings(blocks_g, blocks_critic, backward=True))
  terms = trainer.terms
  tolerances = {'g_loss': c * U * (mean_abs(terms['generated_scores'])
                                   + mean_abs(terms['patch_generated_scores']))}
  for prefix in ('', 'patch_'):
    n = terms[prefix + 'gp_norms']
    tolerances[prefix + 'critic_loss'] = U * (
        c * (mean_abs(terms[prefix + 'real_scores'])
             + mean_abs(terms[prefix + 'fake_scores']))
        + c_penalty * gp_weight * mean_abs(2 * (n - 1) * n))
  return tolerances


def test_bf16_channels_last_step_runs_near_float32():
  """The timed GPU variant's arithmetic, on the CPU: same weights and draws,
  losses within bfloat16 rounding of float32's (`_bf16_tolerances`: what
  bfloat16's precision allows through the nets' depth, whichever kernels
  run it. CPUs with native bfloat16 units round differently: g_loss 0.119
  against float32's 0.083 on one, 0.087 on another; the bound is 0.18)."""
  c = _tiny_config()
  variables = torch_nets.perturbed(models.random_variables(c.model), 0)
  gen = torch.Generator().manual_seed(0)
  res, b, n = c.model.resolution, c.train.batch_size, c.train.n_critic
  inputs = (torch.rand((n, b, 3, res, res), generator=gen) * 2 - 1,
            torch.randn((n, b, c.model.z_dim), generator=gen),
            torch.rand((n, 2, b), generator=gen),
            torch.randn((b, c.model.z_dim), generator=gen))
  f32_step = train_step_torch.TorchTrainStep(variables, c.train)
  f32 = f32_step.step(*inputs)
  bf16 = train_step_torch.TorchTrainStep(
      variables, c.train, channels_last=True,
      autocast=torch.bfloat16).step(*inputs)
  tolerances = _bf16_tolerances(f32_step, c.train.gp_weight)
  for name in ('critic_loss', 'patch_critic_loss', 'g_loss'):
    a, b_ = float(f32[name]), float(bf16[name])
    assert np.isfinite(b_) and abs(a - b_) <= tolerances[name], (
        name, a, b_, tolerances[name])
