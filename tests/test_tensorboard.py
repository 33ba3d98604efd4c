"""Training's TensorBoard events hold what metrics.jsonl and samples/ hold.

The work dir's writer is tested here directly; tests/test_training.py
checks the events of a real training run the same way.
"""
import numpy as np
import pytest
from PIL import Image

from helpers import event_values, load_config, metrics_scalars
from jaxinpaint.training import workdir_files

pytest.importorskip('tensorboardX')


def test_run_files_write_every_scalar_and_the_sample_grids(tmp_path):
  workdir = tmp_path / 'run'
  files = workdir_files.RunFiles(workdir, load_config('tiny'))
  rng = np.random.default_rng(0)
  for step in (1, 2, 3):
    files.log([{'step': step, 'time': 1000.0 + step,
                'critic_loss': float(rng.normal()),
                'wasserstein': float(rng.normal()), 'g_loss': 1e-9 * step}])
  files.log([{'step': 3, 'it_per_s': 2.5, 'expected_final_step': 40}])
  samples = rng.uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
  files.sample_grid(2, samples)
  files.log([{'step': 3, 'bn_eval_gap_recalibrated': 0.125}])
  files.close()

  scalars, images = event_values(workdir)
  expected = metrics_scalars(workdir)
  assert len(expected) == 3 * 3 + 2 + 1
  assert set(scalars) == set(expected)
  for key, value in expected.items():
    assert scalars[key] == np.float32(value), key  # stored as float32
  assert sorted(images) == [2]
  png = np.asarray(Image.open(workdir / 'samples' / 'step_000002.png'))
  np.testing.assert_array_equal(images[2], png)
  assert png.shape == (2 * 10 + 2, 2 * 10 + 2, 3)  # 2 x 2 images, 2 px pad


def test_event_scalars_keeps_numbers_only():
  record = {'step': 3, 'time': 1.5, 'g_loss': -0.25, 'it_per_s': 2,
            'note': 'x', 'flag': True}
  assert workdir_files.event_scalars(record) == {'g_loss': -0.25,
                                               'it_per_s': 2.0}


def test_nothing_is_written_by_a_run_that_logs_nothing(tmp_path):
  files = workdir_files.RunFiles(tmp_path / 'run', load_config('tiny'))
  files.close()
  assert not (tmp_path / 'run').exists()


def test_training_goes_on_without_tensorboardx(tmp_path, monkeypatch):
  monkeypatch.setitem(__import__('sys').modules, 'tensorboardX', None)
  files = workdir_files.RunFiles(tmp_path / 'run', load_config('tiny'))
  files.log([{'step': 1, 'g_loss': 0.5}])
  files.sample_grid(1, np.zeros((1, 4, 4, 3), np.float32))
  files.close()
  assert metrics_scalars(tmp_path / 'run') == {('g_loss', 1): 0.5}
  assert (tmp_path / 'run' / 'samples' / 'step_000001.png').is_file()
  assert not list((tmp_path / 'run').glob('events.out.tfevents.*'))
