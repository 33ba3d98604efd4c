"""jaxinpaint.inputs, jaxinpaint.loading and the public surface that scripts
use.

No script in bench/ or experiments/, nor inpaint.py or train.py, reaches
into a private name of the library; a work dir's unfinished checkpoint gets
G's BatchNorm statistics recalibrated on load.
"""
import ast
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image
import pytest

from helpers import REPO
from jaxinpaint import errors, models
from jaxinpaint.inpaint_job import inputs
from jaxinpaint.models import checkpoint, loading
from jaxinpaint.training import config_schema

SCRIPTS = (sorted(REPO.glob('bench/*.py'))
           + sorted(REPO.glob('experiments/*.py'))
           + [REPO / 'inpaint.py', REPO / 'train.py'])


def private_uses(source: str) -> list:
  """'line: what' for each use of a private jaxinpaint name in `source`:
  `module._name` of an imported jaxinpaint module, `from jaxinpaint.x import
  _name`, and pylint's protected-access waiver."""
  found = [f'{i}: protected-access waiver'
           for i, line in enumerate(source.splitlines(), 1)
           if 'protected-access' in line]
  tree = ast.parse(source)
  modules = set()  # local names bound to jaxinpaint modules
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        if a.name.split('.')[0] == 'jaxinpaint':
          modules.add(a.asname or a.name.split('.')[0])
    elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith(
        'jaxinpaint'):
      for a in node.names:
        if a.name.startswith('_'):
          found.append(f'{node.lineno}: from {node.module} import {a.name}')
        elif node.module == 'jaxinpaint':  # a module of the package
          modules.add(a.asname or a.name)
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and node.attr.startswith('_')
        and not node.attr.startswith('__')):
      base = node.value
      while isinstance(base, ast.Attribute):  # jaxinpaint.data._x
        base = base.value
      if isinstance(base, ast.Name) and base.id in modules:
        found.append(f'{node.lineno}: {ast.unparse(node)}')
  return found


def test_the_checker_finds_private_uses():
  bad = ('import jaxinpaint.data\nfrom jaxinpaint import inputs as i\n'
         'from jaxinpaint.inpaint_job.outputs import _x\n'
         'i._load(1)\njaxinpaint.data._to_float(2)\n'
         'y = 3  # pylint: disable=protected-access\n')
  assert private_uses(bad) == [
      '6: protected-access waiver', '3: from jaxinpaint.inpaint_job.outputs import _x',
      '4: i._load', '5: jaxinpaint.data._to_float']
  # Private names of other objects, and dunders, are not the library's.
  assert private_uses('from jaxinpaint import cli\nimport os\n'
                      'os._exit\ncli.__doc__\nx._y\n') == []


def test_scripts_use_public_names_only():
  assert len(SCRIPTS) >= 8
  for path in SCRIPTS:
    uses = private_uses(path.read_text(encoding='utf-8'))
    assert not uses, (path.relative_to(REPO), uses)


# ----------------------------------------------------------------------------
# Loading a model: a work dir's unfinished checkpoint.


def _workdir(path, recalibrated: bool, flagged: bool = True):
  """A training work dir whose checkpoint holds G's running averages as the
  inference statistics, not finalized (as training saves before its end),
  or other ones, finalized. `flagged=False`: without the flag, as saved
  before it existed."""
  c = config_schema.base_config()
  c.model.resolution, c.model.width, c.model.z_dim = 32, 4, 16
  c.train.batch_size, c.train.bn_recalibration_batches = 4, 2
  variables = models.random_variables(c.model)
  g_stats = variables['generator']['batch_stats']
  eval_stats = (jax.tree.map(lambda x: x + 0.5, g_stats) if recalibrated
                else g_stats)
  tree = {'step': jnp.asarray(3), 'g_params': variables['generator']['params'],
          'g_stats': g_stats, 'g_stats_eval': eval_stats,
          'd_params': {k: v['params'] for k, v in variables.items()
                       if k != 'generator'}}
  path.mkdir()
  checkpoint.save_config(path, c)
  mgr = checkpoint.manager(path)
  mgr.save(3, args=ocp.args.StandardSave(tree), custom_metadata=(
      checkpoint.step_metadata(recalibrated) if flagged else None))
  mgr.wait_until_finished()
  return c, tree


def test_an_unfinished_workdir_checkpoint_is_recalibrated(tmp_path, notes):
  config, tree = _workdir(tmp_path / 'w', recalibrated=False)
  assert not checkpoint.is_finalized(tmp_path / 'w', 3)
  model = loading.load_model(tmp_path / 'w')
  variables = model.variables
  assert model.step == 3
  err = '\n'.join(notes())
  assert len(err.strip().splitlines()) == 1
  assert 'running averages; recalibrating them over 2 batches' in err
  assert 'jaxinpaint.cli.export' in err
  generator = models.build_models(config.model)['generator']
  want = models.recalibrated_stats(generator, tree['g_params'],
                                     tree['g_stats'], config)
  got = variables['generator']['batch_stats']
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               got, want)
  # Not the running averages it was saved with (means 0, variances 1).
  assert any(not np.allclose(a, b) for a, b in zip(
      jax.tree.leaves(got), jax.tree.leaves(tree['g_stats'])))


def test_a_workdir_saved_without_the_finalized_flag_is_recalibrated(
    tmp_path, notes):
  # Saved before the flag existed: unfinished, whatever its statistics.
  config, tree = _workdir(tmp_path / 'w', recalibrated=True, flagged=False)
  assert not checkpoint.is_finalized(tmp_path / 'w', 3)
  got = loading.load_model(tmp_path / 'w').variables['generator']
  assert 'recalibrating them over 2 batches' in '\n'.join(notes())
  generator = models.build_models(config.model)['generator']
  want = models.recalibrated_stats(generator, tree['g_params'],
                                   tree['g_stats'], config)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               got['batch_stats'], want)


def test_find_model_names_the_argument_not_a_flag(tmp_path):
  (tmp_path / 'empty').mkdir()
  for model, says in ((tmp_path / 'nope', 'no such directory (nor a shipped '
                       'model: celeba64'),
                      (tmp_path / 'empty', 'not a jaxinpaint model directory')):
    with pytest.raises(errors.ArgumentError) as e:
      loading.find_model(model)
    assert e.value.argument == 'model' and '--' not in str(e.value)
    assert str(e.value).startswith(f'model: {model}: {says}'), str(e.value)
    assert e.value.for_flag('--checkpoint').startswith(
        f'--checkpoint: {model}: {says}')


def test_finished_and_exported_models_load_as_saved(tmp_path, capsys,
                                                     notes):
  _, tree = _workdir(tmp_path / 'w', recalibrated=True)
  assert checkpoint.is_finalized(tmp_path / 'w', 3)
  variables = loading.load_model(tmp_path / 'w').variables
  assert capsys.readouterr().err == '' and not notes()
  jax.tree.map(np.testing.assert_array_equal,
               variables['generator']['batch_stats'], tree['g_stats_eval'])
  exported = loading.load_model('svhn32_dcgan')  # a shipped name
  assert checkpoint.is_finalized(loading.ASSETS / 'svhn32_dcgan', 0)
  config, direct, step = checkpoint.load_inference_variables(
      loading.ASSETS / 'svhn32_dcgan')
  assert capsys.readouterr().err == '' and not notes()
  jax.tree.map(np.testing.assert_array_equal, exported.variables, direct)
  # The handle's identity is the config's: a DCGAN's uniform latent.
  assert (exported.arch, exported.z_dim, exported.resolution,
          exported.step) == ('dcgan', config.model.z_dim, 32, step)
  assert exported.latent_distribution == 'uniform'
  assert sorted(exported.nets) == ['critic', 'generator']


def test_check_counts_names_the_flag():
  for kwargs, message in ((dict(steps=0), '--steps must be >= 1, got 0'),
                          (dict(batch_size=-1), '--batch-size must be >= 1'),
                          (dict(steps=10**7), '--steps must be <= 1000000'),
                          (dict(limit=0), '--limit must be >= 1, got 0'),
                          (dict(seed=2**32), '--seed must be >= 0')):
    try:
      inputs.check_counts(**kwargs)
    except errors.InputError as e:
      assert str(e).startswith(message), (kwargs, str(e))
    else:
      raise AssertionError(f'{kwargs} passed')
  inputs.check_counts(limit=1, seed=2**32 - 1, steps=10**6, batch_size=1)


def test_shipped_examples_are_package_data():
  assert sorted(p.name for p in (inputs.EXAMPLES / 'faces').iterdir()) and all(
      (inputs.EXAMPLES / f).is_file() for f in
      ('reference.png', 'conditional_mask.png', 'center_mask.png'))
  assert len(list((inputs.EXAMPLES / 'faces').glob('*.jpg'))) == 16
  assert len(list((inputs.EXAMPLES / 'digits').glob('*.png'))) == 8
  assert not (REPO / 'examples').exists()
  assert 'examples' not in loading.shipped_model_names()
  assert Path(inputs.__file__).parents[1] / 'assets' == loading.ASSETS


@pytest.mark.parametrize('side', [12, 15])  # Pillow: a warning, an error
def test_inputs_over_the_bomb_limit_are_refused_from_the_header(
    tmp_path, monkeypatch, recwarn, side):
  # 100 pixels is Pillow's limit here: 12x12 is over it (Pillow warns and
  # decodes), 15x15 over twice it (Pillow raises DecompressionBombError).
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)
  folder = tmp_path / 'in'
  folder.mkdir()
  Image.new('RGB', (8, 8)).save(folder / 'good.png')
  big = folder / 'big.png'
  Image.new('RGB', (side, side)).save(big)
  reads = {
      'image': lambda: inputs.load_inputs(str(folder), 8),
      'mask file': lambda: inputs.load_masks(str(big), ['good'], 8, 0),
      'reference': lambda: inputs.load_image_files([str(big)], 8,
                                                   'reference'),
  }
  for what, read in reads.items():
    with pytest.raises(errors.ImageTooLargeError) as e:
      read()
    message = str(e.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(what) and 'big.png' in message, message
    assert f'{side * side:,} pixels' in message, message
    assert 'limit of 100 pixels' in message and 'resize it' in message
  assert not [w for w in recwarn
              if issubclass(w.category, Image.DecompressionBombWarning)]


def test_a_reference_folder_is_called_a_folder(tmp_path):
  with pytest.raises(errors.InputError) as e:
    inputs.load_image_files([str(tmp_path)], 8, 'reference')
  assert str(e.value) == (f'reference {tmp_path} is a folder, not an image '
                          'file; give one image file')
