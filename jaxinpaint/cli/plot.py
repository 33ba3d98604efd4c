"""Training curves of one model from its work dirs' metrics.jsonl.

  jaxinpaint-plot runs/celeba64_a runs/celeba64_b --out curves.png

Panels: the Wasserstein estimates of the critics D and Dp, their gradient
penalties, G's loss, and iterations/s, over generator steps. Several work
dirs are several runs of one model (a warm start continues its source's
step count: `config.train.init_from`); they are joined on the step axis in
the order given, with a dashed line where a run begins. Needs matplotlib
(`pip install 'jaxinpaint[plot]'`).
"""
import argparse
import json
from pathlib import Path

import numpy as np

METRICS_FILE = 'metrics.jsonl'
# (panel title, [(metrics.jsonl key, legend)]).
PANELS = (
    ('Wasserstein estimate', [('wasserstein', 'D'),
                              ('patch_wasserstein', 'Dp')]),
    ('gradient penalty', [('gp', 'D'), ('patch_gp', 'Dp')]),
    ("G's loss", [('g_loss', 'G')]),
    ('iterations/s', [('it_per_s', 'measured between logs')]),
)


def read_step_records(workdir):
  """The per-step records of a work dir's metrics.jsonl, in step order.

  A resumed run logs again the steps after its last checkpoint: the last
  record of a step wins (the one the saved state continued from). Records
  that are not step metrics (the time-limit forecast, the BatchNorm
  recalibration) are left out. Raises ValueError (one line) for a missing
  file, a bad line or no step records.
  """
  path = Path(workdir) / METRICS_FILE
  if not path.is_file():
    raise ValueError(f'{workdir}: no {METRICS_FILE} (not a training work '
                     'dir?)')
  by_step = {}
  for number, line in enumerate(path.read_text().splitlines(), 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}:{number}: not JSON ({e.msg})') from e
    if isinstance(record, dict) and 'g_loss' in record and 'step' in record:
      by_step[int(record['step'])] = record
  if not by_step:
    raise ValueError(f'{path}: no step records (a run that logged no step)')
  return [by_step[s] for s in sorted(by_step)]


def iteration_rates(records):
  """(steps, iterations/s) between consecutive logs of one run.

  Every record of one log (a flush of `log_every` steps) carries the same
  wall time; the rate at a log is (its last step − the previous log's last
  step) / (its time − the previous time). The first log has none: its
  interval would hold the compilation.
  """
  ends = {}  # time -> last step logged at that time
  for r in records:
    if 'time' in r:
      ends[r['time']] = max(ends.get(r['time'], r['step']), r['step'])
  times = sorted(ends)
  steps, rates = [], []
  for t0, t1 in zip(times, times[1:]):
    if t1 > t0 and ends[t1] > ends[t0]:
      steps.append(ends[t1])
      rates.append((ends[t1] - ends[t0]) / (t1 - t0))
  return np.asarray(steps, np.int64), np.asarray(rates, np.float64)


def join_runs(runs):
  """Joins runs (lists of step records) on the step axis.

  A run that continues the previous one's step count keeps its steps; one
  that starts at or before the previous run's last step (a warm start from
  a model that recorded no step) is shifted to begin right after it.

  Returns ({key: (steps int64, values float64)} for every key of PANELS
  present, 'it_per_s' from `iteration_rates` of each run; starts: the
  joined first step of each run).
  """
  series, starts, last = {}, [], 0
  for records in runs:
    first = records[0]['step']
    shift = last + 1 - first if first <= last else 0
    starts.append(first + shift)
    for _, lines in PANELS:
      for key, _ in lines:
        if key == 'it_per_s':
          steps, values = iteration_rates(records)
        else:
          kept = [r for r in records if key in r]
          steps = np.asarray([r['step'] for r in kept], np.int64)
          values = np.asarray([r[key] for r in kept], np.float64)
        if len(steps):
          old = series.get(key, (np.zeros(0, np.int64), np.zeros(0)))
          series[key] = (np.concatenate([old[0], steps + shift]),
                         np.concatenate([old[1], values]))
    last = records[-1]['step'] + shift
  return series, starts


def _broken_at(series, starts):
  """(steps, values) with a NaN before each later run's first step, so a
  line does not join two runs."""
  steps, values = np.asarray(series[0], np.float64), series[1]
  cut = np.searchsorted(steps, starts)
  return np.insert(steps, cut, np.nan), np.insert(values, cut, np.nan)


def plot_curves(series, starts, out, title=None):
  """Writes the panels to `out` (PNG) with matplotlib's Agg backend."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(len(PANELS), 1, figsize=(7, 2.2 * len(PANELS)),
                           sharex=True, constrained_layout=True)
  for ax, (name, lines) in zip(axes, PANELS):
    for key, label in lines:
      if key in series:
        ax.plot(*_broken_at(series[key], starts[1:]), label=label,
                linewidth=0.8)
    for s in starts[1:]:
      ax.axvline(s, color='grey', linestyle='--', linewidth=0.8)
    ax.set_ylabel(name)
    if sum(key in series for key, _ in lines) > 1:
      ax.legend(loc='best', fontsize='small')
  axes[-1].set_xlabel('generator step')
  if title:
    axes[0].set_title(title)
  fig.savefig(out, dpi=100)
  plt.close(fig)


def main(argv=None):
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import cli
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('workdirs', nargs='+', metavar='WORKDIR',
                      help="training work dirs (their metrics.jsonl), one "
                      "model's runs in the order they ran")
  parser.add_argument('--out', required=True, help='the PNG to write')
  parser.add_argument('--title', default=None)
  parser.add_argument('--overwrite', action='store_true',
                      help='replace --out if it exists')
  args = parser.parse_args(argv)
  out = Path(args.out)
  if out.exists() and not args.overwrite:
    cli.fail(f'--out {out} exists; pass --overwrite to replace it')
  try:
    runs = [read_step_records(w) for w in args.workdirs]
  except ValueError as e:
    cli.fail(str(e))
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    cli.fail("matplotlib is not installed: pip install 'jaxinpaint[plot]'")
  series, starts = join_runs(runs)
  out.parent.mkdir(parents=True, exist_ok=True)
  plot_curves(series, starts, out, args.title)
  print(f'wrote {out}: {len(runs)} run(s), steps {starts[0]} to '
        f'{runs[-1][-1]["step"] + starts[-1] - runs[-1][0]["step"]}')


if __name__ == '__main__':
  main()
