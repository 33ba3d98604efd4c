"""python -m jaxinpaint.cli.plot: runs joined on the step axis, rates, the PNG."""
import json

import numpy as np
import pytest
from PIL import Image

from jaxinpaint.cli import plot


def write_run(workdir, steps, times, wasserstein, extra=()):
  """metrics.jsonl of a run: step records (g_loss = −step, gp = step/100,
  patch_* only where given), then non-step records."""
  workdir.mkdir(parents=True, exist_ok=True)
  lines = []
  for s, t, w in zip(steps, times, wasserstein):
    lines.append({'step': s, 'time': t, 'critic_loss': 0.0, 'wasserstein': w,
                  'gp': s / 100, 'g_loss': -s, 'patch_wasserstein': 2 * w,
                  'patch_gp': 0.5})
  lines += list(extra)
  (workdir / 'metrics.jsonl').write_text(
      ''.join(json.dumps(r) + '\n' for r in lines))
  return workdir


@pytest.fixture
def runs(tmp_path):
  # Run a: steps 1-10 logged every 5 steps (one wall time per log), then
  # resumed from step 8: steps 9-10 logged again (those values win).
  a = write_run(tmp_path / 'a', list(range(1, 11)) + [9, 10],
                [100.0] * 5 + [102.5] * 5 + [200.0, 200.0],
                [0.1 * s for s in range(1, 11)] + [9.0, 10.0],
                extra=[{'step': 10, 'it_per_s': 3.0,
                        'expected_final_step': 10},
                       {'step': 10, 'bn_eval_gap_recalibrated': 0.1}])
  # Run b: warm-started from a's export, so its steps continue (11-20).
  b = write_run(tmp_path / 'b', list(range(11, 21)),
                [500.0] * 5 + [501.0] * 5, [1.0] * 10)
  # Run c: a warm start whose source recorded no step: steps 1-4 again.
  c = write_run(tmp_path / 'c', [1, 2, 3, 4], [7.0, 7.0, 9.0, 9.0],
                [-1.0] * 4)
  return a, b, c


def test_read_step_records_keeps_the_last_record_of_a_step(runs):
  records = plot.read_step_records(runs[0])
  assert [r['step'] for r in records] == list(range(1, 11))
  assert [r['wasserstein'] for r in records][-3:] == pytest.approx(
      [0.8, 9.0, 10.0])


def test_iteration_rates_between_logs():
  records = [{'step': s, 'time': t, 'g_loss': 0} for s, t in
             [(1, 10.0), (2, 10.0), (3, 11.0), (4, 11.0), (5, 11.5),
              (6, 11.5)]]
  steps, rates = plot.iteration_rates(records)
  # Logs at t = 10 (to step 2), 11 (to 4), 11.5 (to 6): 2 / 1 and 2 / 0.5.
  np.testing.assert_array_equal(steps, [4, 6])
  np.testing.assert_allclose(rates, [2.0, 4.0])


def test_join_runs_on_the_step_axis(runs):
  series, starts = plot.join_runs(
      [plot.read_step_records(r) for r in runs])
  assert starts == [1, 11, 21]
  steps, w = series['wasserstein']
  np.testing.assert_array_equal(steps, np.arange(1, 25))
  np.testing.assert_allclose(
      w, [0.1 * s for s in range(1, 9)] + [9.0, 10.0] + [1.0] * 10
      + [-1.0] * 4)
  np.testing.assert_allclose(series['patch_wasserstein'][1], 2 * w)
  # g_loss = −(the run's own step); c's steps are shifted by 20.
  np.testing.assert_allclose(series['g_loss'][1],
                             [-s for s in range(1, 21)] + [-1, -2, -3, -4])
  np.testing.assert_allclose(series['gp'][1][-4:], [0.01, 0.02, 0.03, 0.04])
  # Rates: a's logs at 100 (to step 5), 102.5 (to 8) and 200 (to 10, the
  # resumed run): 3 / 2.5 and 2 / 97.5; b: 5 steps in 1 s; c: 2 in 2 s.
  rate_steps, rates = series['it_per_s']
  np.testing.assert_array_equal(rate_steps, [8, 10, 20, 24])
  np.testing.assert_allclose(rates, [3 / 2.5, 2 / 97.5, 5.0, 1.0])


def test_main_writes_the_png_and_refuses_to_overwrite(runs, tmp_path, capsys):
  out = tmp_path / 'curves.png'
  plot.main([str(r) for r in runs] + ['--out', str(out), '--title', 'x'])
  image = Image.open(out)
  assert image.format == 'PNG' and image.size == (700, 880)
  assert 'steps 1 to 24' in capsys.readouterr().out
  with pytest.raises(SystemExit) as e:
    plot.main([str(runs[0]), '--out', str(out)])
  assert e.value.code == 2
  assert 'exists; pass --overwrite' in capsys.readouterr().err
  plot.main([str(runs[0]), '--out', str(out), '--overwrite'])


def test_bad_work_dirs_are_named(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    plot.main([str(tmp_path / 'nothing'), '--out', str(tmp_path / 'o.png')])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and 'no metrics.jsonl' in err
  bad = tmp_path / 'bad'
  bad.mkdir()
  (bad / 'metrics.jsonl').write_text('{"step": 1, "g_loss": 0}\n{oops\n')
  with pytest.raises(ValueError, match=r'metrics.jsonl:2: not JSON'):
    plot.read_step_records(bad)
  assert not (tmp_path / 'o.png').exists()
