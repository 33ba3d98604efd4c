"""Completion on several devices
(`batched.inpaint_batches(devices=...)`).

Four host devices are forced with XLA_FLAGS, which must be set before jax
starts, so the comparisons run in a subprocess: 4 devices against 1, same
images, keys and model (width 8, 16x16, random weights, a few Adam steps).
Each device runs the same per-image maths on fewer images, so results agree
up to float rounding, not bit for bit.
"""
import textwrap

import jax
import numpy as np
import pytest

from helpers import run
from jaxinpaint import completion, errors, models, sharding
from jaxinpaint.completion import batched
from jaxinpaint.data import masks
from jaxinpaint.training import config_schema

# The CPU platform even on a GPU host: only it takes a forced device count.
_FOUR_DEVICES = {'XLA_FLAGS': '--xla_force_host_platform_device_count=4',
                 'JAX_PLATFORMS': 'cpu'}

_SCRIPT = textwrap.dedent('''
  import jax, numpy as np
  from jaxinpaint import completion, models, sharding
  from jaxinpaint.training import config_schema
  from jaxinpaint.data import masks
  from jaxinpaint.completion import api, batched
  from jaxinpaint.ops import poisson
  assert jax.local_device_count() == 4, jax.local_devices()
  RES = 16
  c = config_schema.base_config()
  c.model.resolution, c.model.width, c.model.z_dim = RES, 8, 16
  model = models.Model.from_config(c.model, models.random_variables(c.model))
  rng = np.random.default_rng(0)
  originals = rng.uniform(-1, 1, (7, RES, RES, 3)).astype(np.float32)
  mask = masks.center_mask(1, RES, RES)
  indices = np.arange(100, 107)
  options = completion.Options(steps=4, restarts=2)
  GREY = 127.5  # [-1, 1] -> [0, 255]

  # Every call of `complete` gets a whole batch split over the devices.
  calls = []
  complete = completion.complete
  def spy(model, y, mask, keys, **kw):
    calls.append((y.shape[0], len(y.sharding.device_set),
                  len(keys.sharding.device_set)))
    return complete(model, y, mask, keys, **kw)
  api.complete = spy

  def inpaint(devices, **kw):
    return batched.inpaint_batches(
        model, originals, mask, indices,
        spec=completion.LOSSES['paper'], options=options, batch_size=3,
        seed=0, progress=False, devices=devices, **kw)

  four, one = inpaint(None), inpaint(1)
  # 7 images, batch 3 -> 4 on 4 devices: 2 batches, the second padded with
  # one repeated row; on one device 3 batches of 3.
  assert calls == [(4, 4, 4)] * 2 + [(3, 1, 1)] * 3, calls
  for key in batched.RESULT_KEYS:
    assert four[key].shape == one[key].shape, key
    assert four[key].shape[0] == 7, key
  np.testing.assert_array_equal(four['cg_iterations'], one['cg_iterations'])
  diff = np.abs(four['blended'] - one['blended']) * GREY
  assert diff.mean() <= 0.5, diff.mean()
  np.testing.assert_allclose(four['z'], one['z'], atol=1e-4)
  np.testing.assert_allclose(four['final_loss'], one['final_loss'],
                             rtol=1e-4)
  print(f'unconditional: max |diff| {diff.max():.2e} grey levels, '
        f'mean {diff.mean():.2e}')

  # The metrics of the tables: the same numbers whichever device count.
  per4, sum4 = batched.evaluate(originals, four, mask)
  per1, sum1 = batched.evaluate(originals, one, mask)
  assert sum4['n_images'] == sum1['n_images'] == 7
  for k in ('mse', 'hole_mse'):  # uint8 rounding may flip a pixel by 1 level
    np.testing.assert_allclose(per4[k], per1[k], rtol=1e-3, err_msg=k)
  np.testing.assert_allclose(per4['ssim'], per1['ssim'], atol=1e-3)
  for k in ('mse', 'psnr', 'psnr_mean', 'ssim', 'hole_mse'):
    np.testing.assert_allclose(sum4[k], sum1[k], rtol=1e-3, err_msg=k)
  print('metrics', {k: (round(sum4[k], 4), round(sum1[k], 4))
                    for k in ('mse', 'psnr', 'ssim')})

  # Conditional completion (a reference face), 5 images, batch 2 -> 4.
  reference = rng.uniform(-1, 1, (1, RES, RES, 3)).astype(np.float32)
  cond = lambda devices: batched.inpaint_batches(
      model, originals[:5], mask, indices[:5], spec=None,
      options=options, batch_size=2, seed=1, progress=False,
      reference=reference, devices=devices)
  cond4, cond1 = cond(4), cond(1)
  diff = np.abs(cond4['blended'] - cond1['blended']) * GREY
  assert diff.mean() <= 0.5, diff.mean()
  np.testing.assert_allclose(cond4['z'], cond1['z'], atol=1e-4)
  print(f'conditional: max |diff| {diff.max():.2e} grey levels, '
        f'mean {diff.mean():.2e}')

  # The CG blend alone: each system stops on its own test, so a batch split
  # over devices gives every image its one-device iterations and values.
  # Holes of different sizes converge after different iteration counts.
  y = rng.uniform(-1, 1, (4, 24, 24, 3)).astype(np.float32)
  guide = rng.uniform(-1, 1, (4, 24, 24, 3)).astype(np.float32)
  holes = np.ones((4, 24, 24, 1), np.float32)
  for i, side in enumerate((2, 6, 12, 20)):
    holes[i, 2:2 + side, 2:2 + side] = 0
  blend = jax.jit(poisson.poisson_blend)
  place, _ = sharding.batch_placement(jax.local_devices())
  x4, info4 = blend(*place((y, guide, holes)))
  x1, info1 = blend(y, guide, holes)
  assert len(set(np.asarray(info1['iterations']).tolist())) == 4
  np.testing.assert_array_equal(info4['iterations'], info1['iterations'])
  np.testing.assert_allclose(x4, x1, atol=1e-6)
  print('cg iterations', np.asarray(info4['iterations']).tolist())
  print('all checks passed')
''')


def test_four_devices_complete_like_one():
  result = run(['-c', _SCRIPT], env=_FOUR_DEVICES)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'all checks passed' in result.stdout, result.stdout


def test_device_count_and_batch_rounding():
  local = jax.local_devices()
  assert sharding.completion_devices() == local
  assert sharding.completion_devices(1) == local[:1]
  assert sharding.completion_devices(local[:1]) == local[:1]
  for bad in (0, len(local) + 1):
    with pytest.raises(errors.ArgumentError, match=(
        f'devices: got {bad}, but this process has {len(local)} local cpu '
        f'device.*; expected a count from 1 to {len(local)}')):
      sharding.completion_devices(bad)
  with pytest.raises(errors.ArgumentError,
                     match='non-empty list of jax devices'):
    sharding.completion_devices([])
  # min(batch, images) rounded up to a multiple of the devices.
  assert sharding.round_batch_size(3, 7, 4) == 4
  assert sharding.round_batch_size(64, 7, 4) == 8
  assert sharding.round_batch_size(5, 100, 1) == 5
  assert sharding.round_batch_size(8, 100, 4) == 8
  assert sharding.round_batch_size(2, 1, 8) == 8


def test_bad_devices_fail_before_any_work():
  c = config_schema.base_config()
  c.model.resolution, c.model.width, c.model.z_dim = 16, 4, 8
  images = np.zeros((2, 16, 16, 3), np.float32)
  n = len(jax.local_devices()) + 1
  with pytest.raises(errors.ArgumentError, match=f'devices: got {n}'):
    batched.inpaint_batches(
        models.Model.from_config(c.model, models.random_variables(c.model)),
        images,
        masks.center_mask(1, 16, 16), np.arange(2),
        spec=completion.LOSSES['paper'],
        options=completion.Options(steps=1), batch_size=2, seed=0,
        progress=False, devices=n)
