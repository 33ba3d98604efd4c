"""Tests for jaxinpaint.batch_completion: batching, padding, keys, evaluation.

A width-4, 32x32 model with random weights: the outputs are meaningless
images, but batching must not change them beyond float rounding (a batch
size is its own XLA program, whose convolutions may round differently in
the last bit; within one program a batchmate changes nothing, exactly:
tests/test_completion.py).
"""
import jax
import numpy as np
import pytest

from jaxinpaint import completion, errors, models
from jaxinpaint.completion import api, batched
from jaxinpaint.data import masks
from jaxinpaint.ops import metrics
from jaxinpaint.training import config_schema

RES, Z_DIM = 32, 16
OPTIONS = completion.Options(steps=3)
SPEC = completion.LOSSES['paper']


@pytest.fixture(scope='module')
def model():
  c = config_schema.base_config()
  c.model.resolution, c.model.width, c.model.z_dim = RES, 4, Z_DIM
  return models.Model.from_config(c.model, models.random_variables(c.model))


@pytest.fixture(scope='module')
def images():
  return np.random.default_rng(1).uniform(-1, 1, (4, RES, RES, 3)).astype(
      np.float32)


def test_padded_rows():
  padded_rows = batched._padded_rows
  np.testing.assert_array_equal(padded_rows(0, 4, 3), [0, 1, 2])
  np.testing.assert_array_equal(padded_rows(3, 4, 3), [3, 3, 3])
  np.testing.assert_array_equal(padded_rows(4, 7, 4), [4, 5, 6, 4])


def test_batch_size_independence_and_padding(model, images, monkeypatch):
  calls = []
  complete = completion.complete

  def spy(model, y, mask, keys, **kw):
    calls.append((y.shape, np.asarray(jax.random.key_data(keys))))
    return complete(model, y, mask, keys, **kw)

  monkeypatch.setattr(api, 'complete', spy)
  mask = masks.center_mask(1, RES, RES)
  indices = np.array([10, 11, 12, 13])  # keys follow indices, not positions
  run = lambda bs: batched.inpaint_batches(
      model, images, mask, indices, spec=SPEC,
      options=OPTIONS, batch_size=bs, seed=0, progress=False)
  by_2, by_3 = run(2), run(3)

  # Every call has the full batch shape (one compile per batch size); the
  # last batch of 3 holds image 13 three times and its padding is dropped.
  assert [c[0][0] for c in calls] == [2, 2, 3, 3]
  want = np.asarray(jax.random.key_data(completion.image_keys(0, [13] * 3)))
  np.testing.assert_array_equal(calls[-1][1], want)
  for key in batched.RESULT_KEYS:
    assert by_2[key].shape[0] == 4, key
    # Tolerances as test_completion's test_batch_independence: rounding
    # (~1e-7) that 3 Adam steps can grow; a real coupling between images
    # or a padding row in the results is off by orders of magnitude more.
    if key in ('final_loss', 'loss_trace'):
      np.testing.assert_allclose(by_2[key], by_3[key], rtol=1e-5,
                                 err_msg=key)
    else:
      np.testing.assert_allclose(by_2[key], by_3[key], atol=1e-3,
                                 err_msg=key)
  assert by_2['blended'].shape == (4, RES, RES, 3)
  assert by_2['loss_trace'].shape == (4, OPTIONS.steps)
  assert np.all(np.abs(by_2['z']) <= 1)
  # Known pixels are y's, exactly (Poisson blending keeps them).
  known = np.broadcast_to(mask > 0.5, images.shape)
  np.testing.assert_array_equal(by_2['blended'][known], images[known])

  # A (1, H, W, 1) mask is the same as one copy per image.
  tiled = batched.inpaint_batches(
      model, images, np.repeat(mask, 4, 0), indices,
      spec=SPEC, options=OPTIONS, batch_size=2, seed=0, progress=False)
  np.testing.assert_array_equal(tiled['blended'], by_2['blended'])


def test_bad_arguments(model, images):
  kw = dict(spec=SPEC, options=OPTIONS, batch_size=2, seed=0, progress=False)
  mask = masks.center_mask(1, RES, RES)
  with pytest.raises(ValueError, match='masks: has 3 rows'):
    batched.inpaint_batches(model, images,
                             np.repeat(mask, 3, 0), np.arange(4), **kw)
  with pytest.raises(ValueError, match='indices'):
    batched.inpaint_batches(model, images, mask,
                             np.arange(3), **kw)
  with pytest.raises(ValueError, match='ConditionalSpec'):
    batched.inpaint_batches(model, images, mask,
                             np.arange(4), reference=images[:1], **kw)


class Rows:
  """A rows reader (`batched.rows_reader`) over an array, as
  `inputs.ImageFiles` reads files: `read(rows)` gives those rows."""

  def __init__(self, array):
    self.array = array

  def __len__(self):
    return len(self.array)

  def read(self, rows):
    return self.array[np.asarray(rows)]


def refused(argument, match, *args, **kwargs):
  """`inpaint_batches(model, images, masks, indices, ...)` raises
  errors.ArgumentError about `argument`, one line."""
  kw = dict(spec=SPEC, options=OPTIONS, batch_size=2, seed=0, progress=False)
  with pytest.raises(errors.ArgumentError, match=match) as raised:
    batched.inpaint_batches(*args, **dict(kw, **kwargs))
  assert raised.value.argument == argument
  assert '\n' not in str(raised.value)


def test_array_inputs_are_checked_before_any_work(model, images,
                                                  monkeypatch):
  def no_search(*args, **kwargs):
    raise AssertionError('searched with bad inputs')

  monkeypatch.setattr(api, 'complete', no_search)
  monkeypatch.setattr(api, 'complete_conditional', no_search)
  mask = masks.center_mask(1, RES, RES)
  indices = np.arange(4)
  as_uint8 = metrics.to_uint8(images)
  refused('images', r'got uint8 \d+\.\.\d+: divide by 127\.5 and subtract 1$',
          model, as_uint8, mask, indices)
  refused('images', r'channels first', model, images.transpose(0, 3, 1, 2),
          mask, indices)
  refused('masks', r'0\.\.255: divide by 255$', model, images, mask * 255,
          indices)
  refused('masks', r'mask\[\.\.\., None\]', model, images, mask[..., 0],
          indices)
  nan_known = images.copy()
  nan_known[3, 0, 0, 0] = np.nan  # a corner: known in the center mask
  refused('images', 'image 3 has NaN or inf at a known pixel', model,
          nan_known, mask, indices)
  refused('reference', 'got uint8', model, images, mask, indices,
          spec=None, reference=as_uint8[:1])
  refused('options', r'Options\.restarts 0', model, images, mask, indices,
          options=completion.Options(steps=3, restarts=0))
  refused('options', r'Options\.learning_rate nan', model, images, mask,
          indices, options=completion.Options(learning_rate=float('nan')))
  refused('model', r'jaxinpaint\.load_model\(path\)', 'runs/celeba64',
          images, mask, indices)


def test_rows_readers_are_checked_batch_by_batch(model, images):
  mask = masks.center_mask(1, RES, RES)
  hole = np.broadcast_to(mask == 0, images.shape)
  y = np.where(hole, np.nan, images)  # NaN in every hole: never read
  y[3, 0, 0, 0] = np.nan  # a known pixel of image 3, in the second batch
  done = []
  refused('images', 'image 3 has NaN or inf at a known pixel', model,
          Rows(y), mask, np.arange(4),
          on_batch=lambda start, stop, batch: done.append(
              np.isfinite(batch['blended']).all()))
  assert done == [True]  # the first batch's holes were NaN, and ran
  refused('images', 'got uint8', model, Rows(metrics.to_uint8(images)), mask,
          np.arange(4))
  refused('masks', 'divide by 255', model, images,
          Rows(np.repeat(mask, 4, 0) * 255), np.arange(4))


def test_evaluate_matches_numpy():
  rng = np.random.default_rng(2)
  originals = rng.integers(0, 256, (3, RES, RES, 3)).astype(np.float32)
  originals = originals / 127.5 - 1  # as data.load_images gives them
  # Not on the uint8 grid: evaluate must round like the PNG writer.
  completed = np.clip(originals + rng.normal(0, 0.1, originals.shape), -1.2,
                      1.2).astype(np.float32)
  mask = masks.center_mask(1, RES, RES)
  per_image, summary = batched.evaluate(
      originals, {'blended': completed}, mask)

  a = np.round((np.clip(completed, -1, 1) + 1) * 127.5).astype(np.float64)
  b = np.round((originals + 1) * 127.5).astype(np.float64)
  np.testing.assert_array_equal(a, metrics.to_uint8(completed))
  sq = (a - b)**2
  mse = sq.mean(axis=(1, 2, 3))
  hole = np.broadcast_to(mask[..., 0] < 0.5, sq.shape[:3])
  hole_mse = np.array([s[h].mean() for s, h in zip(sq, hole)])
  np.testing.assert_allclose(per_image['mse'], mse, rtol=1e-6)
  np.testing.assert_allclose(per_image['psnr'], 10 * np.log10(255**2 / mse),
                             rtol=1e-5)
  np.testing.assert_allclose(per_image['hole_mse'], hole_mse, rtol=1e-6)
  skm = pytest.importorskip('skimage.metrics')
  ssim = [skm.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False,
                                    data_range=255, channel_axis=-1)
          for x, y in zip(a, b)]
  np.testing.assert_allclose(per_image['ssim'], ssim, atol=1e-5)

  assert summary['n_images'] == 3
  np.testing.assert_allclose(summary['mse'], mse.mean(), rtol=1e-6)
  np.testing.assert_allclose(summary['psnr'],
                             10 * np.log10(255**2 / mse.mean()), rtol=1e-6)
  np.testing.assert_allclose(summary['psnr_mean'],
                             np.mean(10 * np.log10(255**2 / mse)), rtol=1e-5)
  np.testing.assert_allclose(summary['ssim'], np.mean(ssim), atol=1e-5)
  np.testing.assert_allclose(summary['hole_mse'], hole_mse.mean(), rtol=1e-6)
  # More images than one metrics chunk, and the bare array form.
  tile = lambda x: np.tile(x, (24, 1, 1, 1))[:70]
  per_many, _ = batched.evaluate(tile(originals), tile(completed),
                                          mask)
  np.testing.assert_allclose(per_many['mse'][:3], mse, rtol=1e-6)
  assert per_many['mse'].shape == (70,)
