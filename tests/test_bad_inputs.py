"""Bad input to training, export and model loading: one clear error before
anything is written (config values, data set size, unprepared tfds sets,
output folders, damaged config.json) and checksums of exported models."""
import json
import re

import numpy as np
import orbax.checkpoint as ocp
import pytest

from helpers import REPO, load_config, run, write_npz
from jaxinpaint import errors, models, training
from jaxinpaint.cli import export
from jaxinpaint.models import checkpoint, loading
from jaxinpaint.models import export as export_lib
from jaxinpaint.models import model as model_lib
from jaxinpaint.training import config_schema

TRAIN = ['train.py', '--config', 'configs/tiny.py']


@pytest.fixture(scope='module')
def npz(tmp_path_factory):
  return write_npz(tmp_path_factory.mktemp('data') / 'images.npz', n=10)


def tiny_config(npz, **overrides):
  return load_config('tiny', **{'data.folder': '', 'data.npz': str(npz),
                                **overrides})


def tiny_model_config():
  c = config_schema.base_config()
  c.model.resolution, c.model.width, c.model.z_dim = 32, 4, 16
  c.train.batch_size = 4
  return c


# ----------------------------------------------------------------------------
# Config values: checked at load, the flag named, nothing written.


@pytest.mark.parametrize('key,value,message', [
    ('train.log_every', 0, 'must be >= 1'),
    ('train.sample_every', 0, 'must be >= 1'),
    ('train.checkpoint_every', 0, 'must be >= 1'),
    ('train.n_critic', 0, 'must be >= 1'),
    ('train.steps', 0, 'must be >= 1'),
    ('train.steps', -5, 'must be >= 1'),
    ('train.batch_size', 0, 'must be >= 1'),
    ('model.arch', 'gan', "expected one of 'wgan', 'dcgan'"),
    ('model.dtype', 'float8', 'expected one of'),
    ('model.resolution', 48, 'must be a power of two >= 8'),
    ('train.loss', 'hinge', "expected one of 'wgan_gp', 'gan'"),
    ('train.critic_loop', 'loop', "expected one of 'auto', 'scan', 'unroll'"),
    ('train.time_limit', -1.0, 'must be >= 0'),
    ('train.export_dtype', 'int8', 'expected one of'),
    ('train.learning_rate', 0.0, 'must be > 0'),
    ('train.b2', 1.0, 'must be >= 0 and < 1'),
    ('seed', -1, 'must be >= 0 and < 2**32'),
])
def test_bad_config_values_are_refused_before_anything_is_written(
    npz, tmp_path, key, value, message):
  workdir = tmp_path / 'w'
  with pytest.raises(ValueError) as e:
    training.train_and_evaluate(tiny_config(npz, **{key: value}), workdir)
  assert str(e.value).startswith(f'config.{key}={value!r}: {message}')
  assert '\n' not in str(e.value)
  assert not workdir.exists()


def test_every_shipped_config_is_valid():
  for path in sorted((REPO / 'configs').glob('*.py')):
    config_schema.validate(load_config(path.stem))


def test_config_types_and_keys_are_checked(npz):
  config = tiny_config(npz)
  config.train.unlock()
  config.train.stepz = 3
  with pytest.raises(ValueError, match=r'^config\.train\.stepz: not a key'):
    config_schema.validate(config)
  del config.train['stepz']
  del config.train['n_critic']
  with pytest.raises(ValueError, match=r'^config\.train\.n_critic: missing'):
    config_schema.validate(config)
  config = tiny_config(npz)
  config.data.unlock()
  del config.data['skip_corrupt']
  config.data.skip_corrupt = 1  # an int where a boolean belongs
  with pytest.raises(ValueError, match=r'skip_corrupt=1: must be a boolean'):
    config_schema.validate(config)


def test_a_bad_value_on_the_command_line_is_one_line(npz, tmp_path):
  workdir = tmp_path / 'w'
  result = run([*TRAIN, f'--workdir={workdir}', '--config.data.folder=',
                f'--config.data.npz={npz}', '--config.train.log_every=0'])
  assert result.returncode == 2  # a usage error (docs/design.md)
  assert result.stderr.strip().splitlines()[-1] == (
      'error: config.train.log_every=0: must be >= 1')
  assert not workdir.exists()


@pytest.mark.parametrize('text,problem', [
    ('def get_config(:\n  pass\n', None),  # Python's words: see below
    ('X = 1\n', 'cannot load it: it defines no get_config() (a config file '
     'returns its config from get_config(), as configs/*.py do)'),
    ('import math\n\ndef get_config():\n  return math.sqrt(-1)\n',
     'cannot load it: line 4: ValueError: math domain error'),
    ('def get_config():\n  return 1 / 0\n',
     'cannot load it: line 2: ZeroDivisionError: division by zero'),
    ('def get_config():\n  return {"train": {}}\n',
     'get_config() returned a dict, expected an ml_collections.ConfigDict '
     '(start from jaxinpaint.training.config_schema.base_config(), as '
     'configs/*.py do)'),
])
def test_a_config_file_that_does_not_load_is_one_line(tmp_path, text,
                                                      problem):
  # A syntax error or an exception was a traceback; no get_config() was
  # said to be 'an unknown config key'.
  config = tmp_path / 'mine.py'
  config.write_text(text)
  if problem is None:
    with pytest.raises(SyntaxError) as e:
      compile(text, str(config), 'exec')
    problem = f'cannot load it: line 1: SyntaxError: {e.value.msg}'
  workdir = tmp_path / 'w'
  for overrides in ([], ['--config.train.steps=3']):
    result = run(['train.py', '--config', str(config), '--workdir',
                  str(workdir), *overrides])
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f'error: --config {config}: {problem}']
  assert not workdir.exists()


# ----------------------------------------------------------------------------
# A data set smaller than a batch.


def test_a_batch_larger_than_the_data_set_is_refused(npz, tmp_path):
  workdir = tmp_path / 'w'
  with pytest.raises(ValueError) as e:
    training.train_and_evaluate(
        tiny_config(npz, **{'train.batch_size': 64}), workdir)
  assert str(e.value) == (
      'config.train.batch_size=64: the data set has 10 images, but one '
      'batch draws 64; use a smaller batch or more images')
  # On the device one step draws n_critic batches at once.
  with pytest.raises(ValueError) as e:
    training.train_and_evaluate(
        tiny_config(npz, **{'train.batch_size': 8, 'data.on_device': True}),
        workdir)
  assert str(e.value).startswith(
      'config.data.on_device: the data set has 10 images, but one step '
      'draws n_critic x batch_size = 16;')
  assert not workdir.exists()


# ----------------------------------------------------------------------------
# tfds sets that are not prepared: an error, never a download.


def test_an_unprepared_tfds_set_is_an_error_not_a_download(tmp_path):
  empty = tmp_path / 'tfds'
  empty.mkdir()
  workdir = tmp_path / 'w'
  config = load_config('tiny', **{'data.folder': '', 'data.tfds_name': 'mnist',
                                  'data.tfds_data_dir': str(empty)})
  with pytest.raises(ValueError) as e:
    training.train_and_evaluate(config, workdir)
  message = str(e.value)
  assert message.startswith('tfds mnist is not prepared here (nothing in '
                            f'{empty}')
  assert 'run `tfds build mnist --file_format=array_record`' in message
  assert '\n' not in message
  assert not workdir.exists()
  assert not any(empty.rglob('*'))  # nothing downloaded or prepared

  # inpaint.py --input tfds:...: tfds reads TFDS_DATA_DIR when imported.
  out = tmp_path / 'out'
  result = run(['inpaint.py', '--input', 'tfds:mnist:test', '--out', str(out)],
               env={'TFDS_DATA_DIR': str(empty), 'JAX_PLATFORMS': 'cpu'},
               timeout=300)
  assert result.returncode == 2, result.stderr[-2000:]
  line = result.stderr.strip().splitlines()[-1]
  assert line.startswith('error: --input tfds:mnist:test: tfds mnist is not '
                         'prepared here')
  assert 'tfds build mnist' in line and 'Downloading' not in result.stderr
  assert not out.exists() and not any(empty.rglob('*'))


# ----------------------------------------------------------------------------
# Export: --out checked first; a damaged config.json is named.


def tiny_workdir(path, step=3):
  """A training work dir (as train.py leaves it) of random tiny networks."""
  c = tiny_model_config()
  variables = models.random_variables(c.model)
  tree = {'step': np.int32(step),
          'g_params': variables['generator']['params'],
          'g_stats': variables['generator']['batch_stats'],
          'g_stats_eval': variables['generator']['batch_stats'],
          'd_params': {k: v['params'] for k, v in variables.items()
                       if k != 'generator'}}
  path.mkdir(parents=True)
  checkpoint.save_config(path, c)
  mgr = checkpoint.manager(path)
  mgr.save(step, args=ocp.args.StandardSave(tree))
  mgr.wait_until_finished()
  return path


def test_export_checks_out_before_the_recalibration(tmp_path, capsys,
                                                    monkeypatch):
  workdir = tiny_workdir(tmp_path / 'run')
  blocker = tmp_path / 'a_file'
  blocker.write_text('in the way')
  occupied = tmp_path / 'occupied'
  occupied.mkdir()
  (occupied / 'mine.txt').write_text('mine')
  monkeypatch.setattr(model_lib, 'recalibrated_stats', None)  # must not run
  for out, fragment in [(blocker, 'exists and is not an empty directory'),
                        (blocker / 'sub', f'{blocker} is not a directory'),
                        (occupied, 'exists and is not an empty directory')]:
    with pytest.raises(SystemExit) as e:
      export.main(['--workdir', str(workdir), '--out', str(out)])
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'error: --out {out}: ')
    assert fragment in lines[0]
  assert blocker.read_text() == 'in the way'
  assert [p.name for p in occupied.iterdir()] == ['mine.txt']


def test_export_writes_checksums_that_loading_checks(tmp_path):
  workdir = tiny_workdir(tmp_path / 'run')
  model = tmp_path / 'model'
  export.main(['--workdir', str(workdir), '--out', str(model),
               '--recalibration-batches', '1'])
  sums = json.loads((model / checkpoint.CHECKSUM_FILE).read_text())['sha256']
  assert 'g_params/Dense_0/kernel' in sums and 'step' in sums
  _, _, step = checkpoint.load_inference_variables(model)
  assert step == 3


def test_exporting_an_exported_model_says_so(tmp_path, capsys):
  # It has no training state (G's running averages): it was a KeyError:
  # 'g_stats' after the checks; now one line, before any work.
  c = tiny_model_config()
  model = tmp_path / 'model'
  checkpoint.export_inference(model, c, models.random_variables(c.model), 5)
  out = tmp_path / 'again'
  with pytest.raises(SystemExit) as e:
    export.main(['--workdir', str(model), '--out', str(out)])
  assert e.value.code == 2
  assert capsys.readouterr().err.strip().splitlines() == [
      f'error: {model}: already an exported model, not a training work dir: '
      'nothing to export; copy the folder to use it elsewhere']
  # An export that did not finish (no checksums.json, see below) too.
  (model / checkpoint.CHECKSUM_FILE).unlink()
  with pytest.raises(errors.InputError) as e:
    export_lib.export(model, out)
  assert str(e.value) == (
      f'{model}: an exported model whose export did not finish (no '
      'checksums.json), not a training work dir: nothing to export; export '
      'its training work dir again')
  assert not out.exists()


def test_a_damaged_config_json_is_named(tmp_path):
  for text in ('{"model": ', '[1, 2]', b'\xff\xfe'):
    model = tmp_path / 'model'
    model.mkdir(exist_ok=True)
    path = model / 'config.json'
    if isinstance(text, bytes):
      path.write_bytes(text)
    else:
      path.write_text(text)
    with pytest.raises(ValueError) as e:
      checkpoint.load_config(model)
    assert str(e.value).startswith(f'{path}: not a valid config file (')
    assert '\n' not in str(e.value)


# ----------------------------------------------------------------------------
# Checksums of exported models.


@pytest.fixture
def exported(tmp_path):
  c = tiny_model_config()
  model = tmp_path / 'model'
  checkpoint.export_inference(model, c, models.random_variables(c.model), 5)
  return model


def test_a_tampered_checksum_names_the_model_and_the_array(exported):
  path = exported / checkpoint.CHECKSUM_FILE
  sums = json.loads(path.read_text())
  digest = sums['sha256']['d_params/critic/Dense_0/kernel']
  sums['sha256']['d_params/critic/Dense_0/kernel'] = digest[::-1]
  path.write_text(json.dumps(sums))
  with pytest.raises(errors.ChecksumError) as e:
    checkpoint.load_inference_variables(exported)
  assert str(e.value) == (
      f'{exported}: array d_params/critic/Dense_0/kernel does not match its '
      'SHA-256 in checksums.json: the model files are damaged; export or copy '
      'the model again')


def test_flipped_bytes_in_the_stored_arrays_are_detected(exported):
  # The largest data file of the checkpoint holds the arrays' bytes as they
  # are (uncompressed): flipped, they load as other numbers.
  files = [p for p in (exported / checkpoint.CHECKPOINT_DIR).rglob('*')
           if p.is_file() and p.parent.name == 'd']
  largest = max(files, key=lambda p: p.stat().st_size)
  content = bytearray(largest.read_bytes())
  middle = len(content) // 2
  content[middle:middle + 8] = bytes(b ^ 0xFF for b in
                                     content[middle:middle + 8])
  largest.write_bytes(bytes(content))
  with pytest.raises(errors.ChecksumError,
                     match=rf'^{re.escape(str(exported))}: array \S+ does '
                     'not match its SHA-256 in checksums.json'):
    checkpoint.load_inference_variables(exported)


def test_an_exported_model_without_checksums_is_refused(exported):
  # export writes checksums.json last: without it the export did not finish.
  (exported / checkpoint.CHECKSUM_FILE).unlink()
  with pytest.raises(errors.ChecksumError,
                     match=r'exported model without checksums\.json.*export '
                     'it again'):
    checkpoint.load_inference_variables(exported)


def test_an_interrupted_export_leaves_no_model(tmp_path, monkeypatch):
  c = tiny_model_config()
  model = tmp_path / 'model'

  def interrupted(*args):
    raise KeyboardInterrupt  # SIGINT while the checksums are written

  monkeypatch.setattr(checkpoint, 'write_checksums', interrupted)
  with pytest.raises(KeyboardInterrupt):
    checkpoint.export_inference(model, c, models.random_variables(c.model), 5)
  assert not any(tmp_path.iterdir())  # no model, no temporary folder
  monkeypatch.undo()
  model.mkdir()  # an empty folder is a valid target
  checkpoint.export_inference(model, c, models.random_variables(c.model), 5)
  assert checkpoint.is_exported_model(model)
  assert [p.name for p in tmp_path.iterdir()] == ['model']
  assert checkpoint.load_inference_variables(model)[2] == 5


def test_the_shipped_models_carry_checksums_that_match():
  names = loading.shipped_model_names()
  assert names
  for name in names:
    model = loading.ASSETS / name
    assert (model / checkpoint.CHECKSUM_FILE).is_file(), name
    checkpoint.check_checksums(model, checkpoint.restore_raw(model)[0])
