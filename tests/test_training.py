"""Training: end to end, exact resume, data parallelism, bad input."""
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from helpers import (REPO, event_values, load_config, metrics_scalars, run,
                     shared_folder, write_npz)
from jaxinpaint import data, errors, models, training
from jaxinpaint.models import checkpoint, loading
from jaxinpaint.training import workdir_files

TRAIN = ['train.py', '--config', 'configs/tiny.py']


@pytest.fixture(scope='module')
def npz(tmp_path_factory):
  return write_npz(tmp_path_factory.mktemp('data') / 'images.npz')


def npz_flags(npz, steps, **extra):
  flags = ['--config.data.folder=', f'--config.data.npz={npz}',
           f'--config.train.steps={steps}']
  return flags + [f'--config.{k}={v}' for k, v in extra.items()]


def tiny_config(npz, steps, **overrides):
  return load_config('tiny', **{'data.folder': '', 'data.npz': str(npz),
                                'train.steps': steps, **overrides})


def restore(workdir):
  """The raw saved state of a work dir (numpy trees)."""
  return checkpoint.restore_raw(workdir)[0]


TRAINED = ('g_params', 'g_stats', 'd_params', 'g_opt_state', 'd_opt_state')


def read_step_metrics(workdir):
  lines = (Path(workdir) / 'metrics.jsonl').read_text().splitlines()
  return [r for r in map(json.loads, lines) if 'critic_loss' in r]


def assert_trees_equal(a, b, keys=TRAINED, atol=0.0):
  for key in keys:
    leaves_a, leaves_b = jax.tree.leaves(a[key]), jax.tree.leaves(b[key])
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b):
      if atol:
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol,
                                   rtol=0, err_msg=key)
      else:
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                      err_msg=key)


def test_tiny_run_on_celeba_writes_everything(tmp_path):
  folder = shared_folder('celeba64', 'train')
  workdir = tmp_path / 'run'
  result = run([*TRAIN, f'--workdir={workdir}', f'--config.data.folder={folder}',
                '--config.train.steps=6'])
  assert result.returncode == 0, result.stderr[-3000:]
  assert checkpoint.latest_step(workdir) == 6
  assert sorted(p.name for p in (workdir / 'samples').iterdir()) == [
      'step_000002.png', 'step_000004.png', 'step_000006.png']
  records = [json.loads(l) for l in
             (workdir / 'metrics.jsonl').read_text().splitlines()]
  steps = read_step_metrics(workdir)
  assert [r['step'] for r in steps] == [1, 2, 3, 4, 5, 6]
  for key in ('critic_loss', 'wasserstein', 'gp', 'patch_gp', 'g_loss',
              'g_grad_norm', 'd_grad_norm'):
    assert all(np.isfinite(r[key]) for r in steps), key
  losses = [r['critic_loss'] for r in steps]
  assert max(losses) - min(losses) > 1e-2  # the critic is learning
  assert 'bn_eval_gap_recalibrated' in records[-1]
  saved = json.loads((workdir / 'config.json').read_text())
  assert saved['model']['width'] == 8


def test_resume_is_bit_exact(npz, tmp_path):
  straight = tmp_path / 'straight'
  training.train_and_evaluate(tiny_config(npz, 4), straight)
  resumed = tmp_path / 'resumed'
  training.train_and_evaluate(tiny_config(npz, 2), resumed)
  assert checkpoint.latest_step(resumed) == 2
  training.train_and_evaluate(tiny_config(npz, 4), resumed)
  a, b = restore(straight), restore(resumed)
  assert int(a['step']) == int(b['step']) == 4
  assert_trees_equal(a, b, TRAINED + ('g_stats_eval',))
  # TensorBoard: every scalar of metrics.jsonl (float32) and the sample grid
  # at every sample_every (2) steps, the resumed run's in a second file.
  for workdir, runs in ((straight, 1), (resumed, 2)):
    assert len(list(workdir.glob('events.out.tfevents.*'))) == runs
    scalars, images = event_values(workdir)
    expected = metrics_scalars(workdir)
    assert {('critic_loss', s) for s in (1, 2, 3, 4)} <= set(expected)
    assert set(scalars) == set(expected)
    for key, value in expected.items():
      assert scalars[key] == np.float32(value), key
    assert sorted(images) == [2, 4]
    np.testing.assert_array_equal(images[4], np.asarray(
        Image.open(workdir / 'samples' / 'step_000004.png')))


def test_checkpoints_say_whether_finalized_and_load_accordingly(
    npz, tmp_path, capsys, notes):
  workdir = tmp_path / 'run'
  config = tiny_config(npz, 3)  # a periodic checkpoint at 2, the end at 3
  training.train_and_evaluate(config, workdir)
  assert not checkpoint.is_finalized(workdir, 2)
  assert checkpoint.is_finalized(workdir, 3)
  finished = restore(workdir)
  capsys.readouterr()
  model = loading.load_model(workdir)  # as saved, quietly
  assert model.step == 3 and capsys.readouterr().err == '' and not notes()
  jax.tree.map(np.testing.assert_array_equal,
               model.variables['generator']['batch_stats'],
               finished['g_stats_eval'])
  # The periodic checkpoint alone: an unfinished work dir, recalibrated on
  # load as the end of training would have.
  unfinished = tmp_path / 'unfinished'
  shutil.copytree(workdir, unfinished)
  shutil.rmtree(unfinished / checkpoint.CHECKPOINT_DIR / '3')
  saved = restore(unfinished)
  model = loading.load_model(unfinished)
  assert model.step == 2
  assert 'recalibrating them over 2 batches' in '\n'.join(notes())
  got = model.variables['generator']['batch_stats']
  generator = models.build_models(config.model)['generator']
  want = models.recalibrated_stats(generator, saved['g_params'],
                                   saved['g_stats'], config)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               got, want)
  assert any(not np.allclose(a, b) for a, b in zip(
      jax.tree.leaves(got), jax.tree.leaves(saved['g_stats'])))


def test_resume_after_sigkill_is_bit_exact(npz, tmp_path):
  workdir = tmp_path / 'killed'
  proc = subprocess.Popen(
      [sys.executable, *TRAIN, f'--workdir={workdir}',
       *npz_flags(npz, 100000, **{'train.checkpoint_every': 2})],
      cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 400
    while checkpoint.latest_step(workdir) is None:
      assert proc.poll() is None, 'training exited early'
      assert time.time() < deadline, 'no checkpoint within the time limit'
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.kill()
    proc.wait()
  assert proc.returncode == -signal.SIGKILL
  killed_at = checkpoint.latest_step(workdir)
  target = killed_at + 2
  result = run([*TRAIN, f'--workdir={workdir}', *npz_flags(npz, target)])
  assert result.returncode == 0, result.stderr[-3000:]
  reference = tmp_path / 'reference'
  training.train_and_evaluate(tiny_config(npz, target), reference)
  assert_trees_equal(restore(workdir), restore(reference))


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(npz, tmp_path):
  workdir = tmp_path / 'stopped'
  proc = subprocess.Popen(
      [sys.executable, *TRAIN, f'--workdir={workdir}',
       *npz_flags(npz, 100000, **{'train.checkpoint_every': 1000})],
      cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 400
  metrics = workdir / 'metrics.jsonl'
  while not (metrics.exists() and metrics.read_text().count('\n') >= 2):
    assert proc.poll() is None and time.time() < deadline
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 143  # 128 + SIGTERM, as a shell reports it
  assert stderr.strip().splitlines()[-1].startswith(
      'error: stopped by SIGTERM at step ')
  assert 'rerun the same command to resume' in stderr
  assert checkpoint.latest_step(workdir) >= 2


def test_stop_request_catches_signals_in_the_main_thread_then_restores():
  calls = []
  previous = signal.signal(signal.SIGTERM, lambda *_: calls.append('old'))
  sentinel = signal.getsignal(signal.SIGTERM)
  try:
    with workdir_files.StopRequest() as stop:
      assert stop.installed
      os.kill(os.getpid(), signal.SIGTERM)
      deadline = time.time() + 10
      while stop.signum is None and time.time() < deadline:
        time.sleep(0.01)  # the handler runs between bytecodes
      assert stop.signum == signal.SIGTERM
    assert calls == []  # the flag was set instead of the old handler
    assert signal.getsignal(signal.SIGTERM) is sentinel
    assert not stop.installed
  finally:
    signal.signal(signal.SIGTERM, previous)


def test_stop_request_installs_nothing_outside_the_main_thread():
  before = {s: signal.getsignal(s) for s in workdir_files.StopRequest.SIGNALS}
  seen = {}

  def enter():
    with workdir_files.StopRequest() as stop:
      seen['installed'] = stop.installed
      seen['during'] = {s: signal.getsignal(s) for s in before}

  thread = threading.Thread(target=enter)
  thread.start()
  thread.join()
  assert seen == {'installed': False, 'during': before}


@pytest.mark.parametrize('on_device', [False, True])
def test_training_opens_the_source_once_and_runs_in_any_thread(
    npz, tmp_path, monkeypatch, on_device):
  opened = []
  real_open = data.open_source

  def counting_open(data_config):
    opened.append(data_config.npz)
    return real_open(data_config)

  monkeypatch.setattr(data, 'open_source', counting_open)
  previous = signal.signal(signal.SIGTERM, lambda *_: None)
  sentinel = signal.getsignal(signal.SIGTERM)
  try:
    workdir = tmp_path / 'run'
    config = tiny_config(npz, 1, **{'data.on_device': on_device})
    errors = []

    def train():
      try:
        training.train_and_evaluate(config, workdir)
      except BaseException as e:  # pylint: disable=broad-except
        errors.append(e)

    thread = threading.Thread(target=train)
    thread.start()
    thread.join()
    assert not errors, errors
    assert checkpoint.latest_step(workdir) == 1
    assert opened == [str(npz)]
    assert signal.getsignal(signal.SIGTERM) is sentinel
    # From the main thread: handlers installed for the run, then the
    # previous one is back.
    training.train_and_evaluate(tiny_config(npz, 2, **{
        'data.on_device': on_device}), workdir)
    assert checkpoint.latest_step(workdir) == 2
    assert opened == [str(npz)] * 2
    assert signal.getsignal(signal.SIGTERM) is sentinel
  finally:
    signal.signal(signal.SIGTERM, previous)


_DEVICE_SCRIPT = textwrap.dedent('''
  import functools, sys
  import jax, jax.numpy as jnp, numpy as np
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  sys.path.insert(0, 'tests')
  from helpers import load_config
  from jaxinpaint import models, training
  assert jax.device_count() == 4, jax.devices()
  config = load_config('tiny', **{'train.batch_size': 8, 'train.n_critic': 1})
  nets = models.build_models(config.model)
  real = jax.random.uniform(jax.random.key(7), (2, 8, 32, 32, 3),
                            minval=-1, maxval=1)

  def two_steps(devices):
    mesh = Mesh(np.array(devices), ('data',))
    replicated = NamedSharding(mesh, P())
    state = jax.device_put(training.init_state(config, nets), replicated)
    step = jax.jit(functools.partial(
        training.train_step, nets=nets, config=config,
        batch_sharding=NamedSharding(mesh, P('data'))))
    batch = jax.device_put(real, NamedSharding(mesh, P(None, 'data')))
    history = []
    for _ in range(2):
      state, metrics = step(state, batch)
      jax.block_until_ready(state)
      history.append(jax.device_get(metrics))
    return jax.device_get((state.g_params, state.d_params)), history

  (params4, metrics4), (params1, metrics1) = (two_steps(jax.devices()),
                                              two_steps(jax.devices()[:1]))
  # Losses, penalties and gradient norms: computed from the whole global
  # batch either way, so they agree to float rounding.
  for m4, m1 in zip(metrics4, metrics1):
    for k in m1:
      np.testing.assert_allclose(m4[k], m1[k], rtol=1e-4, atol=1e-6,
                                 err_msg=k)
  # Parameters: Adam's first steps move each weight by about ±lr whatever
  # the gradient's size, so the biases that a following norm layer cancels
  # (true gradient 0, float noise ~1e-9) may move by ±lr on one side only.
  lr = config.train.learning_rate
  for a, b in zip(jax.tree.leaves(params4), jax.tree.leaves(params1)):
    np.testing.assert_allclose(a, b, rtol=0, atol=2.5 * lr)
  print('max difference', max(float(np.abs(a - b).max()) for a, b in
                              zip(jax.tree.leaves(params4),
                                  jax.tree.leaves(params1))))
''')


def test_four_devices_give_the_same_step_as_one():
  result = run(['-c', _DEVICE_SCRIPT], env={
      'XLA_FLAGS': '--xla_force_host_platform_device_count=4'})
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'max difference' in result.stdout


def test_two_processes_match_one_process(npz, tmp_path):
  workdir = tmp_path / 'multi'
  port = 20000 + os.getpid() % 20000
  # One critic step per iteration: half the program to compile, twice.
  procs = [subprocess.Popen(
      [sys.executable, *TRAIN, f'--workdir={workdir}',
       *npz_flags(npz, 2, **{'train.n_critic': 1}),
       f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
       f'--process_id={i}'], cwd=REPO, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  reference = tmp_path / 'single'
  config = tiny_config(npz, 2, **{'train.n_critic': 1})
  training.train_and_evaluate(config, reference)
  # Losses and gradient norms of the same global batches agree to rounding;
  # parameters to within Adam's ±lr first moves of the biases that a norm
  # layer cancels (see the four-device test).
  multi, single = (read_step_metrics(d) for d in (workdir, reference))
  assert [m['step'] for m in multi] == [m['step'] for m in single] == [1, 2]
  for a, b in zip(multi, single):
    for key in ('critic_loss', 'patch_critic_loss', 'gp', 'g_loss',
                'd_grad_norm', 'g_grad_norm'):
      np.testing.assert_allclose(a[key], b[key], rtol=1e-4, err_msg=key)
  assert_trees_equal(restore(workdir), restore(reference),
                     ('g_params', 'd_params'),
                     atol=2.5 * config.train.learning_rate)


def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(
    npz, tmp_path):
  workdir = tmp_path / 'nan'
  training.train_and_evaluate(tiny_config(npz, 2), workdir)
  good = restore(workdir)
  # Resumed with a huge learning rate (allowed explicitly), the weights
  # overflow at once.
  config = tiny_config(npz, 50, **{'train.learning_rate': 1e30,
                                   'train.checkpoint_every': 1,
                                   'train.allow_config_change': True})
  with pytest.raises(errors.NonFiniteLossError,
                     match=r'NaN/Inf at step 3;.*checkpoint \(step 2\)'):
    training.train_and_evaluate(config, workdir)
  assert checkpoint.latest_step(workdir) == 2
  assert_trees_equal(restore(workdir), good, TRAINED + ('g_stats_eval',))


# --------------------------------------------------------------------------
# Bad input: one line on stderr, a non-zero exit code, nothing written.


def assert_clean_failure(result, workdir, *fragments):
  assert result.returncode != 0
  lines = result.stderr.strip().splitlines()
  assert lines and lines[-1].startswith('error: '), result.stderr[-2000:]
  for fragment in fragments:
    assert fragment in lines[-1], lines[-1]
  assert not Path(workdir).exists()


def test_resume_with_another_config_is_refused_and_the_old_one_kept(
    npz, tmp_path):
  workdir = tmp_path / 'w'
  training.train_and_evaluate(tiny_config(npz, 2), workdir)
  first = (workdir / 'config.json').read_text()
  with pytest.raises(ValueError) as e:
    training.train_and_evaluate(tiny_config(npz, 3, **{
        'train.batch_size': 4, 'train.learning_rate': 2e-4,
        'train.log_every': 3}), workdir)
  assert str(e.value) == (
      f'workdir {workdir} holds a run of another config: '
      'config.train.batch_size=4 (was 8), '
      'config.train.learning_rate=0.0002 (was 0.0001); resume with its '
      'values, use a new workdir, or set '
      'config.train.allow_config_change=True to continue with these (the '
      'old config is kept as config.<step>.json)')
  assert (workdir / 'config.json').read_text() == first
  assert checkpoint.latest_step(workdir) == 2

  # Allowed explicitly: the run continues with the new learning rate, and
  # the config of steps 1-2 is kept beside the new one. (Keys that do not
  # change the run, like steps and log_every, need no permission.)
  training.train_and_evaluate(tiny_config(npz, 3, **{
      'train.learning_rate': 2e-4, 'train.log_every': 3,
      'train.allow_config_change': True}), workdir)
  assert checkpoint.latest_step(workdir) == 3
  assert (workdir / 'config.2.json').read_text() == first
  config = json.loads((workdir / 'config.json').read_text())
  assert config['train']['learning_rate'] == 2e-4
  assert config['train']['steps'] == 3


def image_folder(folder, n):
  """n distinct 32x32 PNGs in a new `folder`."""
  folder.mkdir(parents=True)
  images = np.load(write_npz(folder.with_suffix('.npz'), n=n))['images']
  for i, image in enumerate(images):
    Image.fromarray(image).save(folder / f'img{i}.png')
  return folder


def test_a_workdir_or_export_inside_the_data_folder_is_refused(tmp_path):
  # Its sample grids became training images (and the resume took them).
  data_dir = image_folder(tmp_path / 'dC', 8)
  config = load_config('tiny', **{'data.folder': str(data_dir),
                                  'train.steps': 2})
  for workdir, what in ((data_dir, 'is'), (data_dir / 'run1', 'is inside')):
    with pytest.raises(ValueError) as e:
      training.train_and_evaluate(config, workdir)
    assert str(e.value) == (
        f'workdir {workdir}: {what} config.data.folder={data_dir}: its '
        'sample grids (samples/*.png) would become training images; use a '
        'workdir outside the data folder')
  export_to = data_dir / 'model'
  config.train.export_to = str(export_to)
  with pytest.raises(ValueError) as e:
    training.train_and_evaluate(config, tmp_path / 'w')
  assert str(e.value) == (
      f'config.train.export_to={export_to}: is inside config.data.folder='
      f'{data_dir}: the exported model would be written among the training '
      'images; export to a folder outside the data folder')
  result = run([*TRAIN, '--workdir', str(data_dir / 'run1'),
                f'--config.data.folder={data_dir}'])
  assert_clean_failure(result, data_dir / 'run1',
                       f'error: workdir {data_dir / "run1"}: is inside '
                       f'config.data.folder={data_dir}: ')
  assert sorted(p.name for p in data_dir.iterdir()) == [
      f'img{i}.png' for i in range(8)]
  assert not (tmp_path / 'w').exists()


def test_a_resume_on_changed_data_is_refused_unless_allowed(tmp_path):
  data_dir = image_folder(tmp_path / 'data', 8)
  workdir = tmp_path / 'w'

  def config(steps, **overrides):
    return load_config('tiny', **{'data.folder': str(data_dir),
                                  'train.steps': steps, **overrides})

  def refused(change):
    with pytest.raises(ValueError) as e:
      training.train_and_evaluate(config(2), workdir)
    assert str(e.value) == (
        f'workdir {workdir}: the data changed since its run was saved: '
        f'config.data.folder={data_dir} {change}; resume with the same '
        'data, use a new workdir, or set config.train.allow_data_change=True '
        'to continue with this data')
    assert checkpoint.latest_step(workdir) == 1

  training.train_and_evaluate(config(1), workdir)
  listing = json.loads((workdir / workdir_files.DATA_LISTING_FILE).read_text())
  assert listing['count'] == 8 and listing['source'] == f'folder {data_dir}'
  # One more image (as a sample grid written into the folder was).
  (data_dir / 'img0.png').rename(data_dir / 'img8.png')
  shutil.copy(data_dir / 'img8.png', data_dir / 'img0.png')
  refused('has 9 images now, 8 then')
  # As many, but another file.
  (data_dir / 'img8.png').rename(data_dir / 'other.png')
  (data_dir / 'img0.png').unlink()
  refused('has other files than then (as many images, 8, but other names '
          'or sizes)')
  # Allowed: the run goes on, and the listing saved is this data's.
  training.train_and_evaluate(config(2, **{'train.allow_data_change': True}),
                              workdir)
  assert checkpoint.latest_step(workdir) == 2
  same = data.listing_record(data.open_source(config(3).data))
  workdir_files.check_same_data(workdir, config(3), same)
  # A work dir of an older version, without a listing: nothing to compare.
  (workdir / workdir_files.DATA_LISTING_FILE).unlink()
  (data_dir / 'other.png').unlink()
  workdir_files.check_same_data(
      workdir, config(3), data.listing_record(data.open_source(config(3).data)))


def test_missing_and_empty_data_folder(tmp_path):
  workdir = tmp_path / 'w'
  missing = tmp_path / 'nope'
  result = run([*TRAIN, f'--workdir={workdir}', f'--config.data.folder={missing}'])
  assert_clean_failure(result, workdir, str(missing))
  empty = tmp_path / 'empty'
  empty.mkdir()
  result = run([*TRAIN, f'--workdir={workdir}', f'--config.data.folder={empty}'])
  assert_clean_failure(result, workdir, str(empty))


def test_unknown_config_key(tmp_path):
  workdir = tmp_path / 'w'
  result = run([*TRAIN, f'--workdir={workdir}', '--config.train.stepz=3'])
  assert_clean_failure(result, workdir, 'stepz')
  # The message's text, not its repr with quotes and '\n' in it.
  assert result.stderr.strip().splitlines()[-1] == (
      "error: unknown config key 'stepz' in a --config.* override (Did you "
      'mean "steps" instead of "stepz"?); the keys are those of '
      'jaxinpaint/training/config_schema.py')


def test_batch_not_divisible_by_devices(npz, tmp_path):
  workdir = tmp_path / 'w'
  result = run([*TRAIN, f'--workdir={workdir}',
                *npz_flags(npz, 2, **{'train.batch_size': 6})],
               env={'XLA_FLAGS': '--xla_force_host_platform_device_count=4'})
  assert_clean_failure(result, workdir, 'batch_size=6', '4 devices')


def test_corrupt_image_is_named(tmp_path):
  folder = tmp_path / 'images'
  folder.mkdir()
  write_npz(tmp_path / 'x.npz', n=1)
  from PIL import Image
  good = np.load(tmp_path / 'x.npz')['images'][0]
  for i in range(3):
    Image.fromarray(good).save(folder / f'good{i}.png')
  (folder / 'broken.jpg').write_bytes(b'not a jpeg at all')
  workdir = tmp_path / 'w'
  result = run([*TRAIN, f'--workdir={workdir}', f'--config.data.folder={folder}',
                '--config.train.batch_size=4'])
  assert_clean_failure(result, workdir, 'broken.jpg')


def test_unwritable_workdir(npz, tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('in the way')
  workdir = blocker / 'run'
  result = run([*TRAIN, f'--workdir={workdir}', *npz_flags(npz, 2)])
  assert_clean_failure(result, workdir, str(workdir))
  assert blocker.read_text() == 'in the way'


def test_step_refuses_batches_of_another_shape_when_traced():
  config = load_config('tiny')
  nets = models.build_models(config.model)
  state = jax.eval_shape(functools.partial(training.init_state, config, nets))
  step = functools.partial(training.train_step, nets=nets, config=config)
  res = config.model.resolution
  good = jax.ShapeDtypeStruct((2, 8, res, res, 3), np.float32)
  assert jax.eval_shape(step, state, good)[0].step.shape == ()
  for shape in ((2, 8, res, 2 * res, 3), (2, 8, res, res, 1), (8, res, res, 3)):
    with pytest.raises(AssertionError, match='shape'):
      jax.eval_shape(step, state, jax.ShapeDtypeStruct(shape, np.float32))


def test_dcgan_baseline_step_uses_the_gan_loss():
  config = load_config('celeba64_dcgan', **{
      'model.resolution': 32, 'model.width': 4, 'model.z_dim': 16,
      'train.batch_size': 4})
  nets = models.build_models(config.model)
  state = training.init_state(config, nets)
  real = jax.random.uniform(jax.random.key(1), (1, 4, 32, 32, 3),
                            minval=-1, maxval=1)
  step = jax.jit(functools.partial(training.train_step, nets=nets,
                                   config=config))
  new, metrics = step(state, real)
  assert set(metrics) == {'critic_loss', 'd_grad_norm', 'g_loss',
                          'g_grad_norm'}
  assert all(np.isfinite(float(v)) for v in metrics.values())
  # Discriminator outputs are logits: both BCE terms are positive, and the
  # non-saturating G loss −log σ(D(G(z))) too.
  assert float(metrics['critic_loss']) > 0 and float(metrics['g_loss']) > 0
  # D's BatchNorm statistics moved (the DCGAN critic has BN; WGAN critics
  # must not).
  before = jax.tree.leaves(state.d_stats)
  after = jax.tree.leaves(new.d_stats)
  assert before and any(not np.allclose(a, b) for a, b in zip(before, after))
  assert int(new.step) == 1
