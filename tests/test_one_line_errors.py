"""Failures that end with one line instead of a traceback: damaged
checkpoints, a work dir being written, bad config.json files, oversized
searches, damaged caches, a full disk during a checkpoint."""
import asyncio
import errno
import json
import os
import shutil
import sys
import types
from pathlib import Path

import jax
import numpy as np
import pytest
from orbax.checkpoint._src.serialization import serialization
from PIL import Image

from helpers import load_config, run, write_npz
from test_inpaint_cli import FAST, ckpt, cli, write_image  # noqa: F401
from test_bad_inputs import tiny_workdir
from jaxinpaint import data, errors, models, sharding, training
from jaxinpaint.cli import export as export_cli, inpaint
from jaxinpaint.models import export
from jaxinpaint.models import checkpoint, loading
from jaxinpaint.training import workdir_files

TRAIN = ['train.py', '--config', 'configs/tiny.py', '--config.data.folder=']


@pytest.fixture(scope='module')
def npz(tmp_path_factory):
  return write_npz(tmp_path_factory.mktemp('data') / 'images.npz', n=16)


def tiny_config(npz, **overrides):
  return load_config('tiny', **{'data.folder': '', 'data.npz': str(npz),
                                **overrides})


@pytest.fixture(scope='module')
def saved_run(npz, tmp_path_factory):
  """A work dir as train.py leaves it after checkpoints at steps 2 and 4
  (the state of step 0 saved under both: no step is computed)."""
  config = tiny_config(npz)
  workdir = tmp_path_factory.mktemp('run') / 'w'
  nets = models.build_models(config.model)
  functions = training.build_train_functions(config, nets, sharding.training_mesh())
  state = functions.init()
  files = workdir_files.RunFiles(workdir, config)
  for step in (2, 4):
    files.save(state.replace(step=state.step + step), step)
  files.close()
  return config, workdir


def damage(workdir, step):
  """Deletes the array files of a step's checkpoint."""
  arrays = Path(workdir, 'checkpoints', str(step), 'default')
  removed = [f for f in arrays.rglob('*') if f.is_file() and f.parent.name == 'd']
  assert removed
  for f in removed:
    f.unlink()


def error_lines(stderr):
  lines = stderr.strip().splitlines()
  assert len(lines) == 1, stderr[-3000:]
  assert lines[0].startswith('error: ')
  return lines[0]


def test_a_damaged_checkpoint_names_its_step_and_the_intact_one(
    saved_run, tmp_path):
  config, original = saved_run
  workdir = tmp_path / 'w'
  shutil.copytree(original, workdir)
  damage(workdir, 4)
  result = run([*TRAIN, f'--config.data.npz={config.data.npz}',
                '--config.train.steps=6', '--workdir', str(workdir)])
  assert result.returncode == 2
  line = error_lines(result.stderr)
  assert 'the checkpoint of step 4 is damaged' in line
  assert (f'the checkpoint of step 2 is intact: delete '
          f'{workdir}/checkpoints/4 to resume from step 2') in line
  # completion and export name the step too
  with pytest.raises(errors.DamagedCheckpointError,
                     match='the checkpoint of step 4 is damaged'):
    checkpoint.restore_raw(workdir)
  # and without an intact one, train.py says so
  damage(workdir, 2)
  result = run([*TRAIN, f'--config.data.npz={config.data.npz}',
                '--config.train.steps=6', '--workdir', str(workdir)])
  assert result.returncode == 2
  assert 'no earlier checkpoint is intact' in error_lines(result.stderr)


def test_inpaint_names_the_damaged_step(saved_run, tmp_path, capsys):
  _, original = saved_run
  workdir = tmp_path / 'w'
  shutil.copytree(original, workdir)
  damage(workdir, 4)
  face = tmp_path / 'face.png'
  Image.new('RGB', (32, 32), (90, 60, 30)).save(face)
  with pytest.raises(SystemExit) as e:
    inpaint.main(['--checkpoint', str(workdir), '--out',
                      str(tmp_path / 'out'), '--steps', '1', '--input',
                      str(face)])
  assert e.value.code == 2
  line = error_lines(capsys.readouterr().err)
  assert f'{workdir}: the checkpoint of step 4 is damaged' in line


def test_a_work_dir_being_written_is_said_so(saved_run, tmp_path):
  config, original = saved_run
  # Training is writing its first checkpoint: orbax's temporary folder only.
  first = tmp_path / 'first'
  (first / 'checkpoints' / '2.orbax-checkpoint-tmp-1700000000').mkdir(
      parents=True)
  checkpoint.save_config(first, config)
  with pytest.raises(errors.InputError, match=r'its first checkpoint \(step '
                     r'2\) is being written'):
    loading.find_model(first)
  with pytest.raises(FileNotFoundError, match='the checkpoint of step 2 is '
                     'being written; retry when training has saved it'):
    checkpoint.restore_raw(first, wait=0)
  # A step that cannot be read while another is being written: read again,
  # then said so (not "damaged").
  busy = tmp_path / 'busy'
  shutil.copytree(original, busy)
  damage(busy, 4)
  (busy / 'checkpoints' / '6.orbax-checkpoint-tmp-1700000000').mkdir()
  with pytest.raises(errors.CheckpointBeingWrittenError,
                     match='cannot read the checkpoint of step 4: the '
                     'checkpoint of step 6 is being written'):
    checkpoint.restore_raw(busy, wait=0)
  # Once it is saved (the temporary folder renamed), the newest step loads.
  shutil.rmtree(busy / 'checkpoints' / '4')
  (busy / 'checkpoints' / '6.orbax-checkpoint-tmp-1700000000').rmdir()
  _, step = checkpoint.restore_raw(busy, wait=0)
  assert step == 2


def test_reads_abandoned_by_a_failed_restore_stay_silent_later(
    saved_run, tmp_path, monkeypatch):
  # A restore that fails (training rewrote the work dir under it) abandons
  # orbax's reads in flight. Each reports to sys.unraisablehook when
  # tensorstore ends it (on the closed event loop) or its coroutine is
  # collected: possibly after restore_step gave stderr back, or at exit,
  # thousands of 'Exception ignored in: <coroutine ...>' lines. Made here
  # as orbax's reads make them, after the failed restore returned.
  _, original = saved_run
  workdir = tmp_path / 'w'
  shutil.copytree(original, workdir)
  damage(workdir, 4)
  seen = []
  monkeypatch.setattr(sys, 'unraisablehook', seen.append)
  with pytest.raises(errors.DamagedCheckpointError):
    checkpoint.restore_raw(workdir, 4)
  # tensorstore ending a read: the closed loop's call_soon_threadsafe,
  # called from C++ (no Python frame above it). asyncio's own loop,
  # whatever policy an earlier test left (uvicorn's is uvloop's, whose
  # frames `test_abandoned_reads_of_uvloop_are_recognised` covers).
  loops = [asyncio.SelectorEventLoop()]
  closed_loop_errors = []
  for loop in loops:
    loop.close()
    with pytest.raises(RuntimeError, match='Event loop is closed') as e:
      loop.call_soon_threadsafe(print)
    closed_loop_errors.append(e.value)
  # orbax's read coroutine, closed when collected: its `except
  # BaseException` turns the GeneratorExit into an Exception.
  # pylint: disable-next=protected-access
  read = serialization._read_array_index_and_device_put(
      None, None, None, global_shape=None, new_shard_shape=None, dtype=None,
      byte_limiter=None, strict=True, dll=None, memory_kind=None)
  report = lambda error, traceback=None, obj=None: types.SimpleNamespace(
      exc_type=type(error), exc_value=error, exc_traceback=traceback,
      err_msg=None, object=obj)  # sys.UnraisableHookArgs's fields
  reports = [*(report(closed, closed.__traceback__.tb_next)
               for closed in closed_loop_errors),
             report(Exception('Encountered error while reading array index'),
                    obj=read),
             report(ValueError('not a read'))]
  for unraisable in reports:
    sys.unraisablehook(unraisable)
  read.close()
  # Dropped; what is not an abandoned read still reaches the hook.
  assert seen == reports[-1:]


def test_abandoned_reads_of_uvloop_are_recognised():
  # uvloop's loop (Cython) names its frames 'uvloop.loop.Loop.<method>'.
  uvloop = pytest.importorskip('uvloop')
  loop = uvloop.new_event_loop()
  loop.close()
  with pytest.raises(RuntimeError, match='Event loop is closed') as e:
    loop.call_soon_threadsafe(print)
  report = types.SimpleNamespace(
      exc_type=RuntimeError, exc_value=e.value, err_msg=None, object=None,
      exc_traceback=e.value.__traceback__.tb_next)
  # pylint: disable-next=protected-access
  assert checkpoint._is_abandoned_read(report)


def test_a_config_json_without_the_networks_is_named(tmp_path, capsys):
  model = tmp_path / 'model'
  model.mkdir()
  for text, missing in (('{}', 'model.arch, model.resolution'),
                        ('{"model": {"arch": "wgan", "width": 8}}',
                         'model.resolution, model.z_dim')):
    (model / 'config.json').write_text(text)
    with pytest.raises(ValueError) as e:
      checkpoint.load_config(model)
    assert str(e.value).startswith(f'{model / "config.json"}: not a valid '
                                   f'config file (no {missing}')
    with pytest.raises(SystemExit) as e:
      inpaint.main(['--checkpoint', str(model), '--out',
                        str(tmp_path / 'out')])
    assert e.value.code == 2
    assert 'not a valid config file' in error_lines(capsys.readouterr().err)


def test_export_refuses_bad_batches_and_untrained_runs(tmp_path, capsys):
  workdir = tiny_workdir(tmp_path / 'untrained', step=0)
  for argv, says in (
      (['--recalibration-batches', '-5'],
       'error: --recalibration-batches must be >= 1, got -5'),
      ([], f'error: {workdir}: its checkpoint is from step 0, a model that '
           'never trained')):
    with pytest.raises(SystemExit) as e:
      export_cli.main(['--workdir', str(workdir), '--out', str(tmp_path / 'm'),
                   *argv])
    assert e.value.code == 2
    assert error_lines(capsys.readouterr().err).startswith(says)
    assert not (tmp_path / 'm').exists()
  with pytest.raises(ValueError, match='recalibration_batches: must be >= 1'):
    export.export(workdir, tmp_path / 'm', recalibration_batches=0)


def test_a_truncated_cache_is_named(npz, tmp_path):
  cache = tmp_path / 'cache.npy'
  config = tiny_config(npz, **{'data.cache': str(cache)})
  images = data.load_all(config.data, 32)  # writes the cache
  np.testing.assert_array_equal(np.load(cache), images)
  whole = cache.read_bytes()
  for damaged in (whole[:len(whole) // 2], whole[:40], b'not an npy file'):
    cache.write_bytes(damaged)
    with pytest.raises(ValueError) as e:
      data.load_all(config.data, 32)
    assert str(e.value).startswith(
        f'config.data.cache={cache}: cannot read it (')
    assert str(e.value).endswith('delete it to decode the images again')
    assert '\n' not in str(e.value)


FULL_DISK = """
import errno, sys
import orbax.checkpoint as ocp
from jaxinpaint.cli import train

save = ocp.CheckpointManager.save

def full_disk(self, step, *args, **kwargs):
  if step == 2:
    raise OSError(errno.ENOSPC, 'No space left on device')
  return save(self, step, *args, **kwargs)

ocp.CheckpointManager.save = full_disk
sys.argv = ['train.py', *sys.argv[1:]]
train.main()
"""


def test_a_full_disk_during_a_checkpoint_is_one_line_and_resumes_cleanly(
    npz, tmp_path):
  workdir = tmp_path / 'w'
  argv = ['--config', 'configs/tiny.py', '--config.data.folder=',
          f'--config.data.npz={npz}', '--workdir', str(workdir)]
  result = run(['-c', FULL_DISK, *argv])
  assert result.returncode == 1, result.stderr[-3000:]
  line = [l for l in result.stderr.splitlines() if l.strip()][-1]
  assert line == (f'error: cannot write the checkpoint of step 2 in {workdir}:'
                  ' No space left on device; no checkpoint was saved: make '
                  'room and rerun the same command to resume')
  assert 'Traceback' not in result.stderr
  logged = [json.loads(l)['step'] for l in
            (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert logged == [1, 2]
  # The rerun starts again from step 0: its first write drops the records
  # of the lost steps, so none appears twice.
  config = tiny_config(npz)
  files = workdir_files.RunFiles(workdir, config)
  files.log([{'step': 1, 'g_loss': 0.5}])
  files.close()
  assert [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text()
          .splitlines()] == [{'step': 1, 'g_loss': 0.5}]


def test_a_resumed_run_drops_the_records_past_its_checkpoint(saved_run,
                                                              tmp_path):
  config, original = saved_run
  workdir = tmp_path / 'w'
  shutil.copytree(original, workdir)
  lines = [json.dumps({'step': s, 'g_loss': s / 10}) for s in range(1, 7)]
  (workdir / 'metrics.jsonl').write_text('\n'.join(lines) + '\n{"step": 7,')
  files = workdir_files.RunFiles(workdir, config)  # resumes at step 4
  assert files.last_saved == 4
  files.log([{'step': 5, 'g_loss': 1.0}])
  files.close()
  records = [json.loads(l) for l in
             (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in records] == [1, 2, 3, 4, 5]
  assert records[-1]['g_loss'] == 1.0


def test_out_paths_that_cannot_be_made_are_one_line(ckpt, tmp_path, capsys):
  write_image(tmp_path / 'in' / 'a.png')
  dangling = tmp_path / 'dangling'
  dangling.symlink_to(tmp_path / 'nowhere')
  too_long = tmp_path / ('o' * 300)
  cases = [(dangling, [f'--out {dangling}: {dangling} is a dangling symlink '
                       f'(to {tmp_path / "nowhere"})']),
           (dangling / 'sub', [f'{dangling} is a dangling symlink']),
           (too_long, [f'--out {too_long}: File name too long'])]
  if Path('/sys/kernel').is_dir():  # sysfs: no folder can be made there
    cases.append((Path('/sys/jaxinpaint-out'), ['--out /sys/jaxinpaint-out']))
  for out, fragments in cases:
    code, _, _, err = cli(['--checkpoint', ckpt, '--input', tmp_path / 'in',
                           '--out', out, *FAST], capsys)
    assert code == 2, (out, err)
    line = error_lines(err)
    for fragment in fragments:
      assert fragment in line, (fragment, line)
  assert sorted(os.listdir(tmp_path)) == ['dangling', 'in']


def test_an_out_made_read_only_mid_run_names_the_failed_write(
    ckpt, tmp_path, capsys, monkeypatch):
  """The first error is reported: the lock on OUT, which cannot be removed
  either, gets a warning, not a traceback that hides why the run failed."""
  for i, name in enumerate('abcd'):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  out = tmp_path / 'out'
  saved = []
  save, unlink = Image.Image.save, os.unlink
  # After the first batch (raw/a, a, raw/b, b) and grid.png, OUT turns
  # read-only: writes and removals fail.
  read_only = lambda: len(saved) == 5

  def save_until_read_only(self, fp, *args, **kwargs):
    if read_only():
      raise OSError(errno.EROFS, 'Read-only file system')
    saved.append(fp)
    save(self, fp, *args, **kwargs)

  def unlink_unless_read_only(path, *args, **kwargs):
    if read_only():
      raise OSError(errno.EROFS, 'Read-only file system')
    unlink(path, *args, **kwargs)

  monkeypatch.setattr(Image.Image, 'save', save_until_read_only)
  monkeypatch.setattr(os, 'unlink', unlink_unless_read_only)
  code, _, _, err = cli(['--checkpoint', ckpt, '--input', tmp_path / 'in',
                         '--out', out, '--grid-max', '2', *FAST], capsys)
  monkeypatch.undo()
  assert code == 1 and 'Traceback' not in err, err
  lines = err.strip().splitlines()
  assert lines[-1] == (
      f'error: cannot write {out / "raw" / "c.png"}: Read-only file system; '
      f'2 of 4 images are complete in {out}/ (rerun with --resume to do the '
      'rest)')
  assert (f'warning: cannot remove {out / ".lock"}: Read-only file system'
          in err)
