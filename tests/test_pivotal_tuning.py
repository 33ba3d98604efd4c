"""Pivotal tuning after the latent search (`completion.Tuning`).

Tiny random networks (width 4, 32x32, z 16), as tests/test_completion.py:
what is tested is the tuning, not a trained model's completions. The
known-pixel loss is checked against that file's numpy reference of eq. 6-7.
Each distinct program costs seconds to compile on a loaded CPU, so the runs
live in module-scoped fixtures and share their options.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinpaint import completion, models
from jaxinpaint.completion import search
from test_completion import (RES, Z_DIM, build_model, face_mask, forward,
                             np_contextual_terms)

SEED = 5
# The known-pixel loss alone (eq. 6: values and masked gradients, W of eq.
# 7, no prior), so the tuning trace is exactly that loss.
KNOWN_PIXELS = completion.LossSpec(alpha=0.1, beta=0.9, eta=0.0)
TUNE_STEPS = 8
# lr 1e-4: on this width-4 G the known-pixel loss falls at every one of
# the first 10 steps (by 0.4-1.4% a step). At 3e-4 or 1e-3 it falls overall
# but rises at some steps: Adam moves every parameter by ~lr a step, and
# the locality term pulls against the known pixels.
TUNING = completion.Options(steps=4, restarts=2, tuning=completion.Tuning(
    steps=TUNE_STEPS, lr=1e-4, locality=1.0))


def with_tuning(options, **changes):
  """`options` with the tuning fields `changes` changed."""
  return dataclasses.replace(
      options, tuning=dataclasses.replace(options.tuning, **changes))


@pytest.fixture(scope='module')
def wgan():
  return build_model('wgan')


@pytest.fixture(scope='module')
def damaged(wgan):
  """Two images G(z*) (z* outside the box, so beyond the search's reach)
  with a central square hole and a hole on the border; NaN in the holes."""
  y, _ = forward(wgan, 2.5 * jax.random.normal(jax.random.key(1), (2, Z_DIM)))
  mask = np.ones((2, RES, RES, 1), np.float32)
  mask[:, 8:24, 8:24] = 0
  mask[1, :4, :10] = 0
  return np.where(mask == 1, y, np.nan).astype(np.float32), mask


def run(model, y, mask, indices, options, spec=KNOWN_PIXELS):
  out = completion.complete(model, jnp.asarray(y), jnp.asarray(mask),
                            completion.image_keys(SEED, indices), spec=spec,
                            options=options)
  return jax.tree.map(np.asarray, out)


@pytest.fixture(scope='module')
def searched(wgan, damaged):
  return run(wgan, *damaged, [0, 1], with_tuning(TUNING, steps=0))


@pytest.fixture(scope='module')
def tuned(wgan, damaged):
  return run(wgan, *damaged, [0, 1], TUNING)


def test_no_tuning_leaves_every_result_bit_for_bit(wgan, damaged, searched):
  # Tuning.steps=0 with every other tuning option changed: the same search,
  # the same fill, to the bit.
  other = with_tuning(TUNING, steps=0, lr=0.5, layers='late', locality=7.0,
                      locality_samples=4, near_scale=2.0)
  plain = with_tuning(TUNING, steps=0, lr=3e-4, layers='all', locality=1.0,
                      locality_samples=2, near_scale=0.5)
  for options in (other, plain):
    out = run(wgan, *damaged, [0, 1], options)
    assert out.keys() == searched.keys()
    for name, value in searched.items():
      np.testing.assert_array_equal(out[name], value, err_msg=name)
  assert searched['tune_trace'].shape == (2, 0)


def test_tuning_lowers_the_known_pixel_loss_at_every_step(wgan, damaged,
                                                           searched, tuned):
  y, mask = damaged
  trace = tuned['tune_trace']
  assert trace.shape == (2, TUNE_STEPS)
  assert np.all(np.diff(trace, axis=1) < 0), trace
  # The search is untouched: the same ẑ, losses and trace as without tuning.
  for name in ('z', 'final_loss', 'loss_trace'):
    np.testing.assert_array_equal(tuned[name], searched[name], err_msg=name)
  for i in range(2):
    m = mask[i, ..., 0]
    loss = lambda image: sum(
        w * t for w, t in zip((0.1, 0.9), np_contextual_terms(
            image.astype(np.float64), y[i].astype(np.float64), m)))
    # Step 0 is at G(ẑ) itself: the search's fill ...
    np.testing.assert_allclose(trace[i, 0], loss(searched['generated'][i]),
                               rtol=1e-5)
    # ... and the fill after tuning, G_θ(ẑ), is below the last traced step.
    after = loss(tuned['generated'][i])
    assert after < trace[i, -1] < trace[i, 0]
    print(f'image {i}: known-pixel loss {trace[i, 0]:.3f} -> {after:.3f}')
  # The fill is G_θ(ẑ)'s: the known pixels kept, the hole changed.
  known = np.broadcast_to(mask == 1, y.shape)
  np.testing.assert_array_equal(tuned['blended'][known], y[known])
  assert np.abs(tuned['generated'] - searched['generated']).max() > 1e-3
  assert np.all(np.isfinite(tuned['blended']))


def test_fill_from_latents_is_the_end_of_complete(wgan, damaged, tuned):
  y, mask = damaged
  out = jax.tree.map(np.asarray, completion.fill_from_latents(
      wgan, y, mask, tuned['z'], completion.image_keys(SEED, [0, 1]),
      spec=KNOWN_PIXELS, options=TUNING))
  for name in ('generated', 'overlay', 'blended', 'tune_trace'):
    np.testing.assert_array_equal(out[name], tuned[name], err_msg=name)


def test_tuning_in_one_scan_agrees_with_the_host_loop(wgan, damaged, tuned):
  # Accelerators run the tuning steps as one lax.scan ('auto' picks the host
  # loop on CPU only). Different programs round differently, and Adam grows
  # that (test_completion.test_host_loop_and_scan_agree): loose tolerances.
  scan = run(wgan, *damaged, [0, 1], dataclasses.replace(TUNING, loop='scan'))
  np.testing.assert_allclose(scan['z'], tuned['z'], atol=1e-3)
  np.testing.assert_allclose(scan['tune_trace'], tuned['tune_trace'],
                             rtol=1e-3)
  np.testing.assert_allclose(scan['generated'], tuned['generated'], atol=1e-2)


def test_batchmates_do_not_matter_when_tuning(wgan, damaged, tuned):
  # The same compiled programs (batch of 2), so exact: image 0's tuned fill
  # must not move when its batchmate (image, mask, key) and place change.
  y, mask = damaged
  # Flipped alike: the batchmate's holes (NaN) stay its holes (a NaN at a
  # known pixel is refused, `api.check_known`).
  other, other_mask = y[1, ::-1], mask[1, ::-1]
  out = run(wgan, np.stack([other, y[0]]), np.stack([other_mask, mask[0]]),
            [7, 0], TUNING)
  for name in ('z', 'generated', 'overlay', 'blended', 'tune_trace'):
    np.testing.assert_array_equal(out[name][1], tuned[name][0], err_msg=name)


# Mean |G_θ(z) − G(z)| over the pixels of far latents (fresh draws from G's
# training distribution, never seen in tuning), on [-1, 1], after 8 steps
# at lr 1e-3 (a large step, so that G moves). Measured on a 2-core CPU:
# 0.028 and 0.043 (the two images) with the locality term at weight 10
# (100 gives the same: Adam's steps do not scale with the loss), 0.21 and
# 0.31 without it. The tolerance sits between them, a factor ~2 from each:
# all in float32 from fixed seeds, so another CPU's kernels change these
# numbers only by rounding (~1e-6, which Adam can grow to a few ±lr steps
# on the rare weights whose gradient is near zero), far less than the gap.
FAR_TOLERANCE = 0.08


def far_change(model, tuned_params, i, z):
  """Mean |G_θ(z) − G(z)| of image i's tuned G, with Flax directly."""
  g = model.variables['generator']
  params = dict(g['params'], **jax.tree.map(lambda p: p[i], tuned_params))
  apply = jax.jit(model.nets['generator'].apply)
  return float(jnp.abs(apply(dict(g, params=params), z) -
                       apply(g, z)).mean())


def test_locality_keeps_far_latents_close_to_g(wgan, damaged, tuned):
  y, mask = damaged
  keys = completion.image_keys(SEED, [0, 1])
  far = wgan.sample_latent(jax.random.key(123), (8,))
  changes = {}
  for weight in (0.0, 10.0):
    options = with_tuning(TUNING, lr=1e-3, locality=weight)
    params, trace = completion.tune_generators(
        wgan, y, mask, tuned['z'], keys, spec=KNOWN_PIXELS, options=options)
    assert set(params) == set(wgan.variables['generator']['params'])
    assert np.all(trace[:, -1] < trace[:, 0])
    changes[weight] = [far_change(wgan, params, i, far) for i in range(2)]
  print('far |G_θ(z) − G(z)|:', changes)
  assert max(changes[10.0]) < FAR_TOLERANCE < min(changes[0.0])


def test_late_layers_and_the_memory_they_need(wgan):
  params = wgan.variables['generator']['params']
  late = models.generator_late_layers(params)
  assert sorted(late) == ['BatchNorm_0', 'Conv_0', 'UpBlock_1', 'UpBlock_2']
  report = completion.tuning_bytes_per_image(
      wgan, completion.Options(tuning=completion.Tuning(layers='late')))
  count = sum(x.size for name in late for x in jax.tree.leaves(params[name]))
  assert report == dict(tuned_params=count, bytes_per_image=16 * count)
  whole = completion.tuning_bytes_per_image(wgan, completion.Options())
  assert whole['tuned_params'] == models.count_params(params)
  # DCGAN G (32x32: ConvTranspose_0..2): the last stage, the output and the
  # BatchNorm after ConvTranspose_1.
  dcgan = build_model('dcgan')
  assert sorted(models.generator_late_layers(
      dcgan.variables['generator']['params'])) == [
          'BatchNorm_2', 'ConvTranspose_1', 'ConvTranspose_2']


def test_conditional_completion_tunes_too(wgan):
  faces, _ = forward(wgan, jax.random.normal(jax.random.key(9), (2, Z_DIM)))
  refs, _ = forward(wgan, jax.random.normal(jax.random.key(10), (2, Z_DIM)))
  mask = np.broadcast_to(face_mask()[None, ..., None], (2, RES, RES, 1))
  options = dataclasses.replace(with_tuning(TUNING, layers='late', steps=4),
                                dtype='bfloat16')
  keys = completion.image_keys(SEED, [0, 1])
  out = jax.tree.map(np.asarray, completion.complete_conditional(
      wgan, faces, refs, mask, keys, options=options))
  # bf16 networks: the loss is noisier, so only its overall fall is asked.
  assert out['tune_trace'].shape == (2, 4)
  assert np.all(out['tune_trace'][:, -1] < out['tune_trace'][:, 0])
  assert out['generated'].dtype == np.float32
  keep = np.broadcast_to(mask == 1, faces.shape)
  np.testing.assert_array_equal(out['blended'][keep], faces[keep])
  assert np.all(np.isfinite(out['blended']))


@pytest.mark.parametrize('field, value', [
    ('steps', -1), ('layers', 'early'), ('lr', 0.0),
    ('locality', -1.0), ('locality_samples', -2)])
def test_bad_tuning_options(field, value):
  with pytest.raises(ValueError, match=f'Tuning.{field}'):
    completion.check_tuning(completion.Options(
        tuning=completion.Tuning(**{field: value})))


def test_tuning_settings_do_not_key_the_search_programs():
  # The search's compiled programs take the options without `tuning`, so
  # no tuning field (present or future) makes them compile again.
  other = with_tuning(TUNING, lr=0.5, layers='late', near_scale=2.0)
  assert search.static_options(other) == search.static_options(TUNING)
  assert search.static_options(TUNING).tuning is None
