"""experiments/settings_grid.py: the one-factor completion settings grid.

The cell list, the best pair and the time limit are checked on hand-made
results; one end-to-end run (a random width-4 model, 2 images at 32x32, 2
Adam steps, the loss and z constraint factors) is checked against
common.run_gan (the paper tables' own path) and a numpy MSE.
"""
import json

import numpy as np
from PIL import Image

from helpers import load_experiment, write_npz
from jaxinpaint import completion, models
from jaxinpaint.data import masks as masks_lib
from jaxinpaint.inpaint_job import inputs
from jaxinpaint.models import checkpoint, loading
from jaxinpaint.training import config_schema

DEFAULTS = dict(loss='paper', eta=0.5, z_constraint='box',
                learning_rate=0.03, restarts=1)


grid_lib = load_experiment('settings_grid')


def test_defaults_are_completions_own():
  assert grid_lib.default_settings() == DEFAULTS
  assert completion.Options().learning_rate == 0.03
  assert completion.LOSSES['paper'].eta == 0.5


def test_one_factor_cells_skip_the_defaults_value():
  assert grid_lib.one_factor_cells(DEFAULTS) == [
      {}, {'loss': 'yeh'}, {'eta': 0.0}, {'eta': 0.1}, {'eta': 1.0},
      {'z_constraint': 'sphere'}, {'learning_rate': 0.01},
      {'learning_rate': 0.1}, {'restarts': 4}]
  assert [grid_lib.cell_name(c) for c in
          grid_lib.one_factor_cells(DEFAULTS)][:4] == [
              'defaults', 'loss=yeh', 'eta=0', 'eta=0.1']


def test_resolve_keeps_each_loss_its_own_eta_unless_the_cell_sets_it():
  spec, settings = grid_lib.resolve(DEFAULTS, {'loss': 'yeh'})
  assert spec == completion.LOSSES['yeh'] and settings['eta'] == 0.003
  spec, settings = grid_lib.resolve(DEFAULTS, {'eta': 0.1})
  assert (spec.alpha, spec.beta, spec.eta) == (0.1, 0.9, 0.1)
  assert settings == dict(DEFAULTS, eta=0.1)


def _cell(change, center_mse, squares_mse):
  return dict(change=change, results={'center': {'mse': center_mse},
                                      'three_squares': {'mse': squares_mse}})


def test_best_pair_takes_the_two_factors_that_help_most():
  cells = [_cell({}, 100, 50),
           _cell({'loss': 'yeh'}, 80, 40),           # 0.8
           _cell({'eta': 0.1}, 70, 35),              # 0.7
           _cell({'eta': 1.0}, 120, 60),             # 1.2
           _cell({'learning_rate': 0.1}, 90, 50),    # 0.95
           _cell({'learning_rate': 0.01}, 85, 45),   # 0.875
           _cell({'restarts': 4}, 110, 40)]          # 0.95
  kinds = ['center', 'three_squares']
  # eta and loss are the best two but are never paired: eta + the next.
  change, why = grid_lib.best_pair(cells, kinds)
  assert change == {'eta': 0.1, 'learning_rate': 0.01}
  assert why.startswith('eta (0.7000') and 'learning_rate (0.8750)' in why
  only_one = [cells[0], cells[2], cells[3]]
  change, why = grid_lib.best_pair(only_one, kinds)
  assert change is None and 'better alone: eta' in why


class _FakeClock:

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_time_limit_stops_before_a_cell_that_would_not_fit(monkeypatch):
  clock = _FakeClock()
  ran = []

  def fake_run_cell(model, images, masks, spec, settings, **kwargs):
    del model, images, masks, spec, kwargs
    ran.append(dict(settings))
    clock.now += 10.0 * settings['restarts']  # 10 s per restart
    mse = 100.0 - len(ran)  # every later cell a little better
    return {'center': {'mse': mse}}

  monkeypatch.setattr(grid_lib, 'run_cell', fake_run_cell)
  kinds = {'center': None}
  # 9 one-factor cells of 10 s, restarts=4 is 40 s, then the pair.
  full = grid_lib.run_grid(None, None, kinds, steps=1, batch_size=1,
                           time_limit=None, clock=clock)
  assert len(full['cells']) == 9 and full['not_run'] == []
  assert full['pair']['change'] == {'learning_rate': 0.1, 'restarts': 4}
  assert clock.now == 8 * 10 + 40 + 40

  clock.now, ran[:] = 0.0, []
  saved = []
  cut = grid_lib.run_grid(None, None, kinds, steps=1, batch_size=1,
                          time_limit=85, clock=clock,
                          on_cell=lambda g: saved.append(len(g['cells'])))
  # 8 cells end at 80 s; restarts=4 would need 40 s more, the pair
  # (learning_rate=0.1 and sphere, the best two of those run) 10 s.
  assert [c['name'] for c in cut['cells']][-1] == 'learning_rate=0.1'
  assert len(cut['cells']) == 8 and cut['pair'] is None
  assert cut['not_run'] == ['restarts=4',
                            'z_constraint=sphere, learning_rate=0.1']
  assert saved == list(range(1, 9)) + [8]
  assert clock.now == 80


def _export(path):
  c = config_schema.base_config()
  c.model.resolution, c.model.width, c.model.z_dim = 32, 4, 16
  checkpoint.export_inference(path, c, models.random_variables(c.model), 7)
  return path


def test_grid_end_to_end_matches_the_tables_path(tmp_path):
  images = np.load(write_npz(tmp_path / 'i.npz', n=2, size=32))['images']
  folder = tmp_path / 'faces'
  folder.mkdir()
  for i, image in enumerate(images):
    Image.fromarray(image).save(folder / f'{i}.png')
  model_dir = _export(tmp_path / 'model')
  out = tmp_path / 'grid'
  argv = ['--model', str(model_dir), '--input', str(folder), '--limit', '2',
          '--steps', '2', '--batch-size', '2', '--factors',
          'loss,z_constraint', '--no-pair', '--out', str(out), '--no-progress']
  result = grid_lib.main(argv)

  saved = json.loads((out / 'grid.json').read_text())
  assert saved['settings']['n_images'] == 2 and saved['settings']['step'] == 7
  names = [c['name'] for c in saved['cells']]
  assert names == ['defaults', 'loss=yeh', 'z_constraint=sphere']
  assert saved['cells'][2]['settings'] == dict(DEFAULTS, z_constraint='sphere')
  assert saved['pair'] is None and saved['pair_reason'] == 'not asked for'
  assert result['cells'][0]['results'] == saved['cells'][0]['results']

  # The defaults cell is the paper tables' paper_wgan, loss=yeh its yeh_wgan.
  model = loading.load_model(model_dir)
  faces = inputs.load_inputs(str(folder), 32, 2)[0].read_all()
  search = grid_lib.common.Search(steps=2, batch_size=2, progress=False)
  for cell, loss in ((saved['cells'][0], 'paper'), (saved['cells'][1], 'yeh')):
    for kind in ('center', 'three_squares'):
      mask = masks_lib.make_masks(kind, 1, 32, 32, 0)
      damaged = np.where(mask > 0.5, faces, np.float32(0))
      blended, _ = grid_lib.common.run_gan(model, loss, damaged, mask,
                                           search)
      u8 = lambda x: np.clip(np.round((np.asarray(x, np.float64) + 1)
                                      * 127.5), 0, 255)
      mse = np.mean((u8(blended) - u8(faces)) ** 2, axis=(1, 2, 3))
      got = cell['results'][kind]
      np.testing.assert_allclose(got['mse'], mse.mean(), rtol=1e-6)
      np.testing.assert_allclose(
          got['psnr'], 10 * np.log10(255 ** 2 / mse.mean()), rtol=1e-6)
      hole = np.broadcast_to(mask < 0.5, faces.shape)
      hole_mse = [((u8(blended[i]) - u8(faces[i])) ** 2)[hole[i]].mean()
                  for i in range(2)]
      np.testing.assert_allclose(got['hole_mse'], np.mean(hole_mse),
                                 rtol=1e-6)
      assert 0 < got['ssim'] <= 1 and got['seconds'] >= 0

  # The markdown rows carry the JSON's numbers.
  table = (out / 'grid.md').read_text()
  center = table.split('## mask `center`')[1].split('## mask')[0]
  rows = {line.split('|')[1].strip(): line for line in center.splitlines()
          if line.startswith('| ') and not line.startswith('| setting')}
  assert set(rows) >= set(names)
  first = saved['cells'][0]['results']['center']
  assert f'{first["mse"]:.4f}' in rows['defaults']
  assert '| 1.0000 |' in rows['defaults']
  ratio = saved['cells'][1]['results']['center']['mse'] / first['mse']
  assert f'{ratio:.4f}' in rows['loss=yeh']
  assert 'best pair: not asked for' in table
