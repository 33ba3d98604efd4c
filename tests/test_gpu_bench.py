"""scripts/gpu_bench.sh (ours vs PyTorch on one GPU) dry-run on the CPU at
tiny sizes, its table, and bench/trace_top_ops.py on synthetic and real
traces."""
import argparse
import gzip
import importlib.util
import json
import os
import subprocess
import sys
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import REPO

sys.path.insert(0, str(REPO / 'bench'))
import gpu_bench  # noqa: E402
import trace_top_ops  # noqa: E402


def _write_trace(path, events):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(gzip.compress(json.dumps(
      {'traceEvents': events}).encode()))


def test_trace_reader_sums_by_process_and_name(tmp_path, capsys):
  meta = [{'ph': 'M', 'pid': 1, 'name': 'process_name',
           'args': {'name': '/device:GPU:0'}},
          {'ph': 'M', 'pid': 2, 'name': 'process_name',
           'args': {'name': '/host:CPU'}}]
  x = lambda pid, name, ts, dur: {'ph': 'X', 'pid': pid, 'tid': 1,
                                  'name': name, 'ts': ts, 'dur': dur}
  events = meta + [x(1, 'conv', 0, 30), x(1, 'conv', 50, 30),
                   x(1, 'fusion', 80, 10), x(1, 'fusion', 140, 10),
                   x(2, 'step', 0, 100), x(2, 'inner', 10, 20)]
  trace = tmp_path / 'trace' / 'plugins' / 'profile' / 'r' / 'h.trace.json.gz'
  _write_trace(trace, events)
  summary = trace_top_ops.summarize(trace_top_ops.load_traces(
      tmp_path / 'trace')[0])
  gpu = summary['/device:GPU:0']
  assert gpu['ops'] == {'conv': 60.0, 'fusion': 20.0}
  assert gpu['counts'] == {'conv': 2, 'fusion': 2}
  # Busy: [0,30] + [50,90] + [140,150] = 80 µs of a 150 µs span.
  assert (gpu['busy_us'], gpu['span_us']) == (80.0, 150.0)
  host = summary['/host:CPU']
  assert (host['busy_us'], host['span_us']) == (100.0, 100.0)  # nested once

  with tarfile.open(tmp_path / 'trace.tar.gz', 'w:gz') as tar:
    tar.add(tmp_path / 'trace', arcname='trace')
  trace_top_ops.main([str(tmp_path / 'trace.tar.gz'), '--process', 'GPU'])
  out = capsys.readouterr().out
  assert 'busy 0.1 ms of a 0.1 ms span (53%)' in out
  lines = [l.split() for l in out.splitlines()[2:]]
  assert [l[-1] for l in lines] == ['conv', 'fusion']
  assert [l[1] for l in lines] == ['75.0%', '25.0%']
  assert 'host' not in out


def test_trace_reader_reads_a_jax_cpu_trace(tmp_path):
  f = jax.jit(lambda x: jnp.tanh(x @ x).sum())
  x = jnp.ones((64, 64))
  f(x).block_until_ready()
  with jax.profiler.trace(str(tmp_path / 'trace'), create_perfetto_trace=True):
    for _ in range(3):
      f(x).block_until_ready()
  traces = trace_top_ops.load_traces(tmp_path / 'trace')
  assert len(traces) == 1
  summary = trace_top_ops.summarize(traces[0])
  host = next(v for k, v in summary.items() if 'CPU' in k)
  # Our three calls of the jitted function are in it.
  calls = [n for n, c in host['counts'].items() if 'PjitFunction' in n]
  assert calls and sum(host['counts'][n] for n in calls) >= 3
  assert 0 < host['busy_us'] <= host['span_us']


def test_trace_reader_refuses_a_folder_without_a_trace(tmp_path):
  result = subprocess.run([sys.executable, 'bench/trace_top_ops.py',
                           str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True)
  assert result.returncode != 0
  assert 'no .trace.json.gz inside' in result.stderr


def test_table_takes_ours_flops_for_every_row_of_a_computation():
  rows = [{'task': 'peak', 'tflop_per_s': 800.0, 'device': 'GPU X'},
          {'task': 'train', 'framework': 'jax', 'variant': 'bfloat16',
           'width': 32, 'batch': 64, 'it_per_s': 20.0, 'flops': 2e12},
          {'task': 'train', 'framework': 'pytorch', 'variant': 'eager',
           'width': 32, 'batch': 64, 'it_per_s': 10.0},
          {'task': 'train', 'framework': 'pytorch', 'variant': 'compile',
           'width': 32, 'batch': 64, 'error': 'RuntimeError: no'}]
  lines = gpu_bench.make_table(rows).splitlines()
  assert lines[0] == 'device: GPU X; bf16 matmul peak measured: 800 TFLOP/s'
  cells = [[c.strip() for c in l.split('|')[1:-1]] for l in lines[4:]]
  # 2e12 FLOP x 20 it/s = 40 TFLOP/s = 5% of 800; PyTorch: 20 = 2.5%.
  assert cells[0][5:] == ['20.00', '2000.0', '40.0', '5.0']
  assert cells[1][5:] == ['10.00', '2000.0', '20.0', '2.5']
  assert cells[2][4].startswith('compile (failed: RuntimeError')
  assert cells[2][5] == '—'


def test_train_flops_count_every_critic_update():
  """XLA's count of the unrolled step: each critic update adds the same
  FLOPs, and twice the width about four times the conv FLOPs (a scan's
  body would be counted once)."""
  from jaxinpaint import models, training

  def flops(width, n_critic):
    args = argparse.Namespace(resolution=32, dtype='bfloat16', batch=4,
                              n_critic=n_critic)
    config = gpu_bench._train_config(args, width)
    nets = models.build_models(config.model)
    state = jax.eval_shape(lambda: training.init_state(config, nets))
    return gpu_bench.train_flops(config, nets, state, 4)

  f1, f2, f3 = (flops(4, n) for n in (1, 2, 3))
  assert f2 - f1 > 0.3 * f1
  # To the few FLOPs of a random draw's index arithmetic.
  assert abs((f3 - f2) - (f2 - f1)) <= 1e-5 * f3
  assert 3 < flops(8, 1) / f1 < 4.2


@pytest.mark.skipif(importlib.util.find_spec('torch') is None,
                    reason='PyTorch is not installed (pip install -e '
                    '.[bench-torch])')
def test_gpu_bench_dry_run_on_cpu(tmp_path):
  results = tmp_path / 'results'
  env = dict(os.environ, PYTHON=sys.executable, RESULTS=str(results),
             WORK=str(tmp_path / 'work'), WHEELS=str(tmp_path / 'none'),
             WIDTHS='4', CWIDTHS='4', RES='32', BATCH='4', N_CRITIC='1',
             STEPS='1', CSTEPS='3', CIMAGES='2', TRACE_STEPS='2',
             MATMUL='128', DATA_IMAGES='2', COMPILE='0', BUDGET='1500',
             T_JAX_TRAIN='900', T_TORCH_TRAIN='300', T_JAX_COMPLETE='300',
             T_TORCH_COMPLETE='300', T_PEAK='120', OMP_NUM_THREADS='1')
  result = subprocess.run(['bash', 'scripts/gpu_bench.sh'], cwd=REPO,
                          env=env, capture_output=True, text=True,
                          timeout=1800)
  assert result.returncode == 0, result.stdout[-3000:]
  names = {p.name for p in results.iterdir()}
  assert names == {'rows.jsonl', 'table.md', 'trace.tar.gz', 'top_ops.txt',
                   'log.txt'}
  rows = [json.loads(l) for l in (results / 'rows.jsonl').read_text(
  ).splitlines()]
  kinds = {(r['task'], r.get('framework'), r.get('variant'), r.get('width'))
           for r in rows}
  assert kinds == {
      ('peak', 'jax', None, None), ('train', 'jax', 'bfloat16', 4),
      ('train', 'pytorch', 'eager', 4), ('train', 'pytorch', 'bf16_cl', 4),
      ('complete', 'jax', 'bfloat16, scan', 4),
      ('complete', 'pytorch', 'bfloat16 autocast', 4)}
  for r in rows:
    assert 'error' not in r, r
    assert r.get('it_per_s', 1) > 0 and r.get('finite', True), r
  assert all(r['n_critic'] == 1 for r in rows if r['task'] == 'train')
  ours = next(r for r in rows if r['task'] == 'train' and
              r['framework'] == 'jax')
  # 1 critic update and the G update at width 4, batch 4, 32x32: 0.36 GFLOP
  # (test_train_flops_count_every_critic_update checks the count itself).
  assert 3e8 < ours['flops'] < 4e8
  assert ours['compiled_flops'] > 0
  table = (results / 'table.md').read_text()
  assert table.count('| train') == 3 and table.count('| complete') == 2
  assert result.stdout.rstrip().endswith(table.rstrip().splitlines()[-1])
  top = (results / 'top_ops.txt').read_text()
  assert '== /host:CPU' in top and 'PjitFunction' in top
