"""Training on a budget: data on the device, the scan/unrolled critic loop,
the time limit with export, and warm starts."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import write_npz
from jaxinpaint import data, errors, host_memory, models, training
from jaxinpaint.models import checkpoint
from test_training import (TRAIN, TRAINED, assert_trees_equal, npz_flags,
                           read_step_metrics, restore, tiny_config)


@pytest.fixture(scope='module')
def npz(tmp_path_factory):
  return write_npz(tmp_path_factory.mktemp('data') / 'images.npz')


# ----------------------------------------------------------------------------
# data.device_batches


def _index_images(n, size=2):
  """uint8 images whose every pixel is the image's index."""
  return np.repeat(np.arange(n, dtype=np.uint8), size * size * 3).reshape(
      n, size, size, 3)


def _drawn_indices(images, seed, first_batch, num_batches, batch):
  out = jax.jit(data.device_batches, static_argnums=(3, 4))(
      jnp.asarray(images), seed, first_batch, num_batches, batch)
  out = np.asarray(out)
  # x = u / 127.5 - 1 is exact for the float32 of every uint8 u.
  np.testing.assert_array_equal(out, out[..., :1, :1, :1].repeat(
      2, 2).repeat(2, 3).repeat(3, 4))
  return np.rint((out[:, :, 0, 0, 0] + 1) * 127.5).astype(int)


def test_device_batches_show_every_image_once_per_epoch():
  n, batch = 10, 4
  images = _index_images(n)
  # 15 batches of 4 = 60 positions = 6 epochs, with batches that straddle
  # epoch boundaries (10 is not a multiple of 4).
  stream = np.concatenate([
      _drawn_indices(images, 3, b, 1, batch).ravel() for b in range(15)])
  for e in range(6):
    assert sorted(stream[e * n:(e + 1) * n]) == list(range(n)), e
  # Not the identity order, and another order in another epoch.
  assert list(stream[:n]) != list(range(n))
  assert list(stream[:n]) != list(stream[n:2 * n])
  # Drawing two batches at once gives the same as one at a time: the batch
  # is a function of (seed, batch index) only.
  np.testing.assert_array_equal(
      _drawn_indices(images, 3, 7, 2, batch).ravel(), stream[28:36])
  # Another seed, another stream.
  other = _drawn_indices(images, 4, 0, 2, batch).ravel()
  assert list(other) != list(stream[:8])


def test_device_batches_refuse_more_rows_than_images():
  with pytest.raises(ValueError, match='need at least 12 images'):
    data.device_batches(jnp.asarray(_index_images(10)), 0, 0, 3, 4)


def test_load_all_decodes_once_and_reuses_the_cache(npz, tmp_path):
  cache = tmp_path / 'decoded.npy'
  config = tiny_config(npz, 1, **{'data.cache': str(cache)}).data
  first = data.load_all(config, 32)
  expected = np.load(npz)['images']
  np.testing.assert_array_equal(first, expected)
  assert cache.is_file()
  again = data.load_all(config, 32)
  assert isinstance(again, np.memmap)  # read from the cache, not decoded
  np.testing.assert_array_equal(again, expected)
  with pytest.raises(ValueError, match=r'data\.cache.*delete it'):
    data.load_all(config, 16)  # the cache holds another resolution


# ----------------------------------------------------------------------------
# The training step.


def test_scan_and_unrolled_critic_loops_agree(npz):
  config = tiny_config(npz, 1, **{'train.n_critic': 3})
  nets = models.build_models(config.model)
  state = training.init_state(config, nets)
  real = jax.random.uniform(jax.random.key(1), (3, 8, 32, 32, 3),
                            minval=-1, maxval=1)
  results = {
      loop: jax.jit(lambda s, r, loop=loop: training.train_step(
          s, r, nets=nets, config=config, critic_loop=loop))(state, real)
      for loop in ('scan', 'unroll')}
  (a, ma), (b, mb) = results['scan'], results['unroll']
  # Adam's step is about lr * sign(gradient) where a gradient is near 0, so
  # the two programs' rounding can flip single updates: parameters agree to
  # a few learning rates, the losses and norms to float rounding.
  lr = config.train.learning_rate
  for key in ('g_params', 'd_params'):
    for x, y in zip(jax.tree.leaves(getattr(a, key)),
                    jax.tree.leaves(getattr(b, key))):
      np.testing.assert_allclose(x, y, rtol=0, atol=3 * 2 * lr, err_msg=key)
  # ... and only a few elements differ by half a step or more (a loop that
  # skipped or repeated an update would move most of them by ~lr).
  diffs = np.concatenate([np.abs(np.ravel(x) - np.ravel(y)) for x, y in zip(
      jax.tree.leaves(a.d_params), jax.tree.leaves(b.d_params))])
  assert (diffs >= lr / 2).mean() < 0.05, (diffs >= lr / 2).mean()
  assert ma.keys() == mb.keys()
  for k in ma:
    np.testing.assert_allclose(ma[k], mb[k], rtol=1e-4, atol=1e-4, err_msg=k)
  # The critic did move (three updates), so the comparison means something.
  moved = jax.tree.leaves(jax.tree.map(
      lambda p, q: jnp.abs(p - q).max(), a.d_params, state.d_params))
  assert max(float(m) for m in moved) > 1e-6


def assert_resume_is_bit_exact(npz, tmp_path, stop, total, **overrides):
  """Training to `total` in one run equals stopping at `stop` and resuming;
  returns the straight run's work dir."""
  straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
  training.train_and_evaluate(tiny_config(npz, total, **overrides), straight)
  training.train_and_evaluate(tiny_config(npz, stop, **overrides), resumed)
  training.train_and_evaluate(tiny_config(npz, total, **overrides), resumed)
  a, b = restore(straight), restore(resumed)
  assert int(a['step']) == int(b['step']) == total
  assert_trees_equal(a, b, TRAINED + ('g_stats_eval',))
  return straight


# 'scan' is what accelerators run ('auto'); the CPU runs 'unroll'.
@pytest.mark.parametrize('critic_loop', ['unroll', 'scan'])
def test_on_device_training_resumes_bit_exact(npz, tmp_path, critic_loop):
  assert_resume_is_bit_exact(npz, tmp_path, 2, 4, **{
      'data.on_device': True, 'train.critic_loop': critic_loop})


def test_on_device_data_larger_than_memory_is_refused(npz, tmp_path,
                                                      monkeypatch):
  monkeypatch.setattr(host_memory, 'free_memory', lambda device: 1000)
  with pytest.raises(ValueError, match=r'on_device.*GiB.*free'):
    training.train_and_evaluate(
        tiny_config(npz, 1, **{'data.on_device': True}), tmp_path / 'w')
  assert not (tmp_path / 'w').exists()


# ----------------------------------------------------------------------------
# Time limit and export; warm start.


class FakeClock:
  """A time source that advances `tick` seconds at each reading: where a
  time limit stops training depends on the code's readings only, not on
  the machine's speed."""

  def __init__(self, tick=1.0, start=0.0):
    self.now, self.tick = start - tick, tick

  def __call__(self):
    self.now += self.tick
    return self.now


def test_time_limit_stops_finalizes_and_exports(npz, tmp_path, capsys):
  workdir, model = tmp_path / 'run', tmp_path / 'model'
  config = tiny_config(npz, 1_000_000, **{
      'train.time_limit': 10.0, 'train.export_to': str(model),
      'train.log_every': 1, 'train.checkpoint_every': 1_000_000,
      'train.sample_every': 1_000_000})
  # Readings: 0 at the start (the limit's origin, so the deadline is 10),
  # then before each step (1, 3, 5, ...) and at each step's log (2, 4, ...):
  # step 5 is logged at 10, and the reading before step 6 (11) stops it.
  training.train_and_evaluate(config, workdir, clock=FakeClock())
  step = checkpoint.latest_step(workdir)
  assert step == 5
  output = ''.join(capsys.readouterr())
  assert 'time limit of 10 s reached at step 5' in output
  # Logged steps 1 and 2 at readings 2 and 4: 0.5 it/s, 6 s left -> 5.
  assert 'time limit: 0.50 it/s, expect to stop near step 5 in 6 s' in output
  records = [json.loads(l) for l in
             (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert {'step': 2, 'it_per_s': 0.5, 'expected_final_step': 5} in records
  assert 'bn_eval_gap_recalibrated' in records[-1]  # finalized
  # The exported model is the final state, recalibrated, in bfloat16.
  config, variables, exported_step = checkpoint.load_inference_variables(
      model)
  assert exported_step == step
  final = restore(workdir)
  for got, saved in zip(jax.tree.leaves(variables['generator']),
                        jax.tree.leaves({'batch_stats': final['g_stats_eval'],
                                         'params': final['g_params']})):
    np.testing.assert_array_equal(
        got, np.asarray(saved, np.float32).astype(jnp.bfloat16).astype(
            np.float32))
  assert config.model.width == 8


def test_a_time_limit_on_a_checkpoint_step_still_finalizes_and_exports(
    npz, tmp_path):
  workdir, model = tmp_path / 'run', tmp_path / 'model'
  # As above, but steps 2 and 4 are periodic checkpoints: the run stops at
  # step 4 (readings 1 .. 8 < 8.5, then 9).
  config = tiny_config(npz, 100, **{
      'train.time_limit': 8.5, 'train.export_to': str(model),
      'train.log_every': 1, 'train.checkpoint_every': 2})
  training.train_and_evaluate(config, workdir, clock=FakeClock())
  assert checkpoint.latest_step(workdir) == 4
  records = [json.loads(l) for l in
             (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert records[-1]['step'] == 4 and 'bn_eval_gap_recalibrated' in records[-1]
  final = restore(workdir)
  assert checkpoint.is_finalized(workdir, 4)  # recalibrated
  assert_exported(model, 4, 'batch_stats', final['g_stats_eval'])


def assert_exported(model, step, collection, saved):
  """The exported `model` is of `step`, and G's first array of `collection`
  is the work dir's `saved` one, in the export's bfloat16."""
  _, variables, exported_step = checkpoint.load_inference_variables(model)
  assert exported_step == step
  np.testing.assert_array_equal(
      jax.tree.leaves(variables['generator'][collection])[0],
      np.asarray(jax.tree.leaves(saved)[0],
                 np.float32).astype(jnp.bfloat16).astype(np.float32))


def test_a_time_limit_shorter_than_the_start_up_is_an_error(npz, tmp_path):
  # The start-up (reading 0 -> 100) outlasts the limit of 1 s.
  readings = iter([0.0, 100.0, 100.0])
  with pytest.raises(errors.TimeLimitTooShort,
                     match=r'time_limit=1: shorter than the start-up \(100 s'):
    training.train_and_evaluate(
        tiny_config(npz, 4, **{'train.time_limit': 1.0,
                               'train.export_to': str(tmp_path / 'model')}),
        tmp_path / 'w', clock=lambda: next(readings))
  assert not any(tmp_path.iterdir())  # nothing saved, nothing exported


@pytest.mark.parametrize('inside', ['.', 'model', '..'])
def test_export_to_the_workdir_or_inside_it_is_refused_before_training(
    npz, tmp_path, inside):
  workdir = tmp_path / 'run' / 'w'
  export_to = workdir / inside
  with pytest.raises(ValueError, match=r'export_to=.*(is the|holds the) '
                     r'workdir'):
    training.train_and_evaluate(
        tiny_config(npz, 1, **{'train.export_to': str(export_to)}), workdir)
  assert not (tmp_path / 'run').exists()


def test_a_finished_run_whose_export_is_missing_exports_it(npz, tmp_path):
  workdir, model = tmp_path / 'run', tmp_path / 'model'
  training.train_and_evaluate(tiny_config(npz, 2), workdir)
  before = restore(workdir)
  # As a signal during the export leaves it: no model (the temporary
  # folder is removed or left aside), the work dir finished.
  training.train_and_evaluate(
      tiny_config(npz, 2, **{'train.export_to': str(model)}), workdir)
  assert checkpoint.latest_step(workdir) == 2
  assert_trees_equal(restore(workdir), before, TRAINED + ('g_stats_eval',))
  assert_exported(model, 2, 'params', before['g_params'])


def test_export_to_an_occupied_folder_is_refused_before_training(npz,
                                                                 tmp_path):
  occupied = tmp_path / 'model'
  occupied.mkdir()
  (occupied / 'keep.txt').write_text('mine')
  with pytest.raises(ValueError, match='export_to.*not an empty directory'):
    training.train_and_evaluate(
        tiny_config(npz, 1, **{'train.export_to': str(occupied)}),
        tmp_path / 'w')
  assert not (tmp_path / 'w').exists()
  assert (occupied / 'keep.txt').read_text() == 'mine'


def test_warm_start_loads_the_source_and_resumes_bit_exact(npz, tmp_path):
  source = tmp_path / 'source'
  training.train_and_evaluate(tiny_config(npz, 3), source)
  src = restore(source)
  warm = {'train.init_from': str(source), 'seed': 7}

  # Asked for no more steps than the source has: only the loaded networks
  # (finalized) are saved, at the source's step.
  loaded = tmp_path / 'loaded'
  training.train_and_evaluate(tiny_config(npz, 3, **warm), loaded)
  got = restore(loaded)
  assert int(got['step']) == 3
  assert_trees_equal(got, src, ('g_params', 'd_params'))
  np.testing.assert_array_equal(  # fresh optimizers
      jax.tree.leaves(got['d_opt_state'])[-1], 0)

  straight = assert_resume_is_bit_exact(npz, tmp_path, 5, 7, **warm)
  assert [r['step'] for r in read_step_metrics(straight)] == [4, 5, 6, 7]


def test_warm_start_from_other_networks_is_refused(npz, tmp_path):
  source = tmp_path / 'source'
  training.train_and_evaluate(tiny_config(npz, 1), source)
  config = tiny_config(npz, 2, **{'train.init_from': str(source),
                                  'model.width': 16})
  with pytest.raises(ValueError, match=r'init_from.*other networks.*width'):
    training.train_and_evaluate(config, tmp_path / 'w')
  assert not (tmp_path / 'w').exists()
