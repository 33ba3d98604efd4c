"""End-to-end test of experiments/paper_tables.py (the paper's Tables 1-2,
Fig. 8).

Tiny exported WGAN and DCGAN checkpoints with random weights (width 4,
z_dim 16, 64x64, as in test_inpaint_cli), 4 CelebA test images, 3 steps.
The script runs in-process twice; the second run reuses the compiled
programs. About 40-70 s on 2 CPU cores (four completion programs compile:
three WGAN losses and the DCGAN).
"""
import json
from pathlib import Path

import numpy as np
import pytest

from helpers import load_experiment
from jaxinpaint import data, models
from jaxinpaint.completion import batched
from jaxinpaint.data import masks
from jaxinpaint.evaluation import baselines, identity
from jaxinpaint.models import checkpoint
from jaxinpaint.ops import metrics, poisson
from jaxinpaint.training import config_schema

ROOT = Path(__file__).resolve().parents[1]
CELEBA_TEST = ROOT.parent / 'shared' / 'data' / 'celeba64' / 'test'
N_IMAGES = 4


def _export(path, arch):
  c = config_schema.base_config()
  c.model.arch = arch
  c.model.resolution, c.model.width, c.model.z_dim = 64, 4, 16
  checkpoint.export_inference(path, c, models.random_variables(c.model), 5)
  return str(path)


def _table_rows(path):
  """{method: [cells after the description]} of a table_<mask>.md."""
  rows = {}
  for line in Path(path).read_text().splitlines():
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if line.startswith('| ') and cells[0] not in ('Method',):
      rows[cells[0]] = [c.replace('**', '') for c in cells[2:]]
  return rows


def test_paper_tables_end_to_end(tmp_path, capsys):
  if not CELEBA_TEST.is_dir():
    pytest.skip(f'{CELEBA_TEST} is absent (../shared/data ships with the '
                'development checkout only)')
  script = load_experiment('paper_tables')
  wgan = _export(tmp_path / 'wgan', 'wgan')
  dcgan = _export(tmp_path / 'dcgan', 'dcgan')
  argv = ['--input', str(CELEBA_TEST), '--limit', str(N_IMAGES), '--steps',
          '3', '--batch-size', str(N_IMAGES), '--wgan', wgan, '--dcgan', dcgan,
          '--no-progress']
  out1, out2 = tmp_path / 'out1', tmp_path / 'out2'
  results = script.main(argv + ['--out', str(out1)])
  stdout = capsys.readouterr().out

  methods = results['settings']['methods']
  expected = [m for m in script.common.METHODS if m not in results['skipped']]
  assert methods == expected
  # Only the optional baselines may be skipped, and then with the hint.
  for m, reason in results['skipped'].items():
    assert m in ('telea', 'biharmonic') and baselines.INSTALL_HINT in reason
  assert set(methods) >= {'paper_wgan', 'yeh_wgan', 'yeh_gradient_wgan',
                          'yeh_dcgan', 'harmonic'}
  on_disk = json.loads((out1 / 'results.json').read_text())
  assert on_disk['results'] == results['results']

  for kind in ('center', 'three_squares'):
    keys = [c[0] for c in script.common.table_columns(
        on_disk['results'][kind])]
    # Four photos of one person: with the eval extra, the identity columns.
    assert (len(keys) > len(script.common.COLUMNS)) == identity.available()
    for name in (f'table_{kind}.md', f'timing_{kind}.md', f'fig_{kind}.png'):
      assert (out1 / name).is_file(), name
    table = (out1 / f'table_{kind}.md').read_text()
    assert table in stdout
    rows = _table_rows(out1 / f'table_{kind}.md')
    assert list(rows) == methods  # one row per method, in order
    for m in methods:
      summary = on_disk['results'][kind][m]
      assert summary['n_images'] == N_IMAGES
      assert rows[m] == [f'{summary[k]:.4f}' for k in keys], (kind, m)
      assert len(on_disk['per_image'][kind][m]['mse']) == N_IMAGES
      assert on_disk['timing'][kind][m]['seconds_per_image'] >= 0
    # The timing stays out of the table (it is not reproducible).
    assert 's/image' not in table
    assert 's/image' in (out1 / f'timing_{kind}.md').read_text()

    # The harmonic row is harmonic_fill of the damaged images, evaluated.
    paths = data.list_image_files(CELEBA_TEST)[:N_IMAGES]
    originals, _ = data.load_images(paths, 64)
    mask = masks.make_masks(kind, 1, 64, 64)
    y = np.where(mask > 0.5, originals, np.float32(0))
    filled, _ = poisson.harmonic_fill(y, mask)
    _, direct = batched.evaluate(originals, np.asarray(filled), mask)
    assert {k: on_disk['results'][kind]['harmonic'][k]
            for k in direct} == direct
    if identity.available():  # the library's numbers on the same fill
      direct.update(identity.summarize(identity.identity_distances(
          metrics.to_uint8(filled), metrics.to_uint8(originals),
          [Path(p).stem for p in paths])))
    assert rows['harmonic'] == [f'{direct[k]:.4f}' for k in keys]

  # Without --overwrite an existing output is refused before any work.
  with pytest.raises(SystemExit) as e:
    script.main(argv + ['--out', str(out1)])
  assert e.value.code == 2
  assert 'already exists' in capsys.readouterr().err

  # The same command again gives the same tables, figures and numbers.
  again = script.main(argv + ['--out', str(out2)])
  for kind in ('center', 'three_squares'):
    for name in (f'table_{kind}.md', f'fig_{kind}.png'):
      assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name
  assert again['results'] == results['results']
  assert again['per_image'] == results['per_image']


def test_conditional_figure_missing_examples(tmp_path, capsys, monkeypatch):
  """experiments/conditional_figure.py says clearly what is missing (no
  completion runs)."""
  script = load_experiment('conditional_figure')
  model = _export(tmp_path / 'wgan', 'wgan')
  with pytest.raises(SystemExit) as e:
    script.main(['--model', model, '--faces', str(tmp_path / 'none')])
  assert e.value.code == 2
  assert f'--faces {tmp_path / "none"}: no such file' in capsys.readouterr().err
  # An installation without the example images.
  monkeypatch.setattr(script, 'EXAMPLES', tmp_path / 'examples')
  with pytest.raises(SystemExit) as e:
    script.main(['--model', model])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert 'examples/faces does not exist' in err and '--faces' in err
