"""Several processes completing one input list (inpaint.py with the
jax.distributed flags, jaxinpaint.inpaint_job.processes): the same files as one
process, each written by one process, and a failed process reported."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import REPO, run
from jaxinpaint import atomic, errors, models
from jaxinpaint.cli import inpaint
from jaxinpaint.inpaint_job import processes
from jaxinpaint.models import checkpoint
from jaxinpaint.training import config_schema

RES, N = 32, 5
# Process 0 gets images 0-1 and process 1 images 2-4; the grid's 3 rows
# come from both. Batches of 2: the last one of process 1 is padded.
FLAGS = ['--steps', '2', '--batch-size', '2', '--grid-max', '3', '--evaluate',
         '--mask', 'center']
NAMES = [f'face{i}' for i in range(N)]


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp('processes')
  c = config_schema.base_config()
  c.model.resolution, c.model.width, c.model.z_dim = RES, 8, 16
  model = root / 'model'
  checkpoint.export_inference(model, c, models.random_variables(c.model), 3)
  rng = np.random.default_rng(0)
  (root / 'in').mkdir()
  for name in NAMES:
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize((RES, RES), Image.Resampling.BILINEAR).save(
        root / 'in' / f'{name}.png')
  single = root / 'single'
  inpaint.main(['--checkpoint', str(model), '--input', str(root / 'in'),
                    '--limit', str(N), '--out', str(single), *FLAGS])
  return root, model, single


def start_processes(model, images, out, port, count=2, extra=()):
  return [subprocess.Popen(
      [sys.executable, 'inpaint.py', '--checkpoint', str(model), '--input',
       str(images), '--limit', str(N), '--out', str(out), *FLAGS,
       f'--coordinator_address=127.0.0.1:{port}',
       f'--num_processes={count}', f'--process_id={i}',
       '--process-timeout=300', *extra],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(count)]


def finish(procs):
  return [(p.returncode, out, err) for p, (out, err) in
          zip(procs, (p.communicate(timeout=600) for p in procs))]


def files(folder, hidden=False):
  return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob('*')
                if p.is_file() and (hidden or processes.STATUS_DIR not in
                                    p.parts))


def test_two_processes_write_what_one_process_writes(setup):
  root, model, single = setup
  multi = root / 'multi'
  results = finish(start_processes(model, root / 'in', multi,
                                   20000 + os.getpid() % 20000))
  for code, out, err in results:
    assert code == 0, err[-3000:]
  assert 'process 1: wrote 3 completed images' in results[1][1]
  assert 'wrote 5 completed images' in results[0][1]

  expected = (['face%d.png' % i for i in range(N)] + ['grid.png',
              'metrics.csv'] + ['raw/face%d.png' % i for i in range(N)]
              + ['run.json', 'summary.json'])
  assert files(single) == files(multi) == sorted(expected)
  for f in files(single):  # PNGs, grid, metrics.csv and summary.json
    assert (single / f).read_bytes() == (multi / f).read_bytes(), f

  # Each file has one writer: the images of its block, and process 0 alone
  # the run's files (grid, metrics.csv, summary.json, not in any list).
  statuses = [processes.read_status(processes.status_path(multi, i))
              for i in range(2)]
  # The logs grow by a line per batch (of 2 images), each naming only its
  # own files (2 per image): linear in the images, never rewritten whole.
  for i, files_per_batch in enumerate(([4], [4, 2])):
    lines = processes.status_path(multi, i).read_text().splitlines()
    per_batch = [json.loads(l).get('written') for l in lines]
    assert [len(w) for w in per_batch if w] == files_per_batch
  assert [s['state'] for s in statuses] == ['done', 'done']
  assert len({s['run'] for s in statuses}) == 1
  written = [set(s['written']) for s in statuses]
  assert written[0] == {f'{d}face{i}.png' for i in (0, 1)
                        for d in ('', 'raw/')}
  assert written[1] == {f'{d}face{i}.png' for i in (2, 3, 4)
                        for d in ('', 'raw/')}
  assert [s['resumed'] for s in statuses] == [0, 0]
  assert [len(s['final_losses']) for s in statuses] == [2, 3]


def test_a_failed_process_is_named_and_the_others_images_are_kept(setup):
  root, model, single = setup
  out = root / 'failing'
  out.mkdir()
  # An output of process 1's block already exists: process 1 refuses to
  # run (without --overwrite), process 0 completes its block.
  (out / 'face3.png').write_bytes(b'not ours')
  (code0, _, err0), (code1, _, err1) = finish(start_processes(
      model, root / 'in', out, 20000 + (os.getpid() + 1) % 20000))
  assert code1 == 2 and 'face3.png already exists' in err1
  assert code0 == 1, err0[-3000:]
  error = [l for l in err0.splitlines() if l.startswith('error:')]
  assert len(error) == 1
  assert 'process 1 of 2 failed' in error[0] and 'face3.png' in error[0]
  assert '--resume' in error[0]
  assert (out / 'face3.png').read_bytes() == b'not ours'
  assert files(out) == ['face0.png', 'face1.png', 'face3.png',
                        'raw/face0.png', 'raw/face1.png', 'run.json']

  # Without the conflict, --resume on both processes does the rest (the
  # failed status of the earlier run is not this run's): the one-process
  # run's files, byte for byte.
  (out / 'face3.png').unlink()
  for code, _, err in finish(start_processes(
      model, root / 'in', out, 20000 + (os.getpid() + 2) % 20000,
      extra=['--resume'])):
    assert code == 0, err[-3000:]
  assert files(out) == files(single)
  for f in files(single):
    assert (single / f).read_bytes() == (out / f).read_bytes(), f


def test_blocks_are_contiguous_disjoint_and_balanced():
  for n in (1, 2, 5, 64, 65):
    for count in (1, 2, 3, 7):
      blocks = [processes.Share(i, count, 'r').rows(n) for i in range(count)]
      np.testing.assert_array_equal(np.concatenate(blocks), np.arange(n))
      sizes = [len(b) for b in blocks]
      assert max(sizes) - min(sizes) <= 1


def test_multi_process_flags_are_checked_before_any_work(capsys):
  for argv, says in (
      (['--num_processes=2'], 'go together'),
      (['--coordinator_address=localhost:1', '--num_processes=2',
        '--process_id=2'], '--process_id must be from 0 to'),
      (['--coordinator_address=localhost:1', '--num_processes=0',
        '--process_id=0'], '--num_processes must be >= 1'),
      (['--multiprocess', '--process_id=0'], 'drop --process_id'),
      (['--process-timeout=0'], '--process-timeout must be > 0'),
      (['--coordinator_address=notahost', '--num_processes=2',
        '--process_id=0'], "--coordinator_address 'notahost': expected HOST:PORT"),
      (['--coordinator_address=h:99999', '--num_processes=2',
        '--process_id=0'], 'expected HOST:PORT')):
    with pytest.raises(SystemExit) as e:
      inpaint.main(['--out', '/nonexistent-never-written', *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and says in err, (argv, err)


def write_status(out, share, state, **fields):
  atomic.write_text(processes.status_path(out, share.index), json.dumps(dict(
      run=share.run_id, process=share.index, state=state, **fields)) + '\n')


def test_waiting_reports_failed_and_silent_processes(tmp_path):
  shares = [processes.Share(i, 3, 'run-a') for i in range(3)]
  write_status(tmp_path, shares[0], 'done')
  write_status(tmp_path, shares[1], 'failed', error='disk full')
  # A status of an earlier run is no status of this one.
  write_status(tmp_path, processes.Share(2, 3, 'run-b'), 'done')
  with pytest.raises(errors.RunError) as e:
    processes.wait_for_all(tmp_path, shares[0], timeout=0.2, poll=0.05)
  assert 'process 1 (failed), process 2 (no status file)' in str(e.value)
  write_status(tmp_path, shares[2], 'done')
  with pytest.raises(errors.RunError) as e:
    processes.wait_for_all(tmp_path, shares[0], timeout=5, poll=0.05)
  assert str(e.value).startswith('process 1 of 3 failed: disk full')
  write_status(tmp_path, shares[1], 'done', resumed=1)
  seen = []
  statuses = processes.wait_for_all(tmp_path, shares[0], timeout=5,
                                    poll=0.05, on_update=seen.append)
  assert [s['process'] for s in statuses] == [0, 1, 2]
  assert statuses[1]['resumed'] == 1 and len(seen) == 1


def test_train_refuses_a_coordinator_address_without_a_port(tmp_path):
  result = run(['train.py', '--config', 'configs/celeba64.py', '--workdir',
                str(tmp_path / 'w'), '--coordinator_address=notahost',
                '--num_processes=2', '--process_id=0'])
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines() == [
      "error: --coordinator_address 'notahost': expected HOST:PORT of "
      'process 0, e.g. 10.0.0.1:1234']


# .invalid never resolves (RFC 2606).
UNKNOWN_HOST = "--coordinator_address 'nosuchhost.invalid:1234': cannot " \
    "resolve the host 'nosuchhost.invalid' ("


def test_an_unresolvable_coordinator_host_fails_at_once(tmp_path, capsys,
                                                        monkeypatch):
  # It waited for jax.distributed's 300 s, then printed a C++ frame.
  assert processes.check_address('nosuchhost.invalid:1234').startswith(
      UNKNOWN_HOST)
  for address in ('localhost:1234', '127.0.0.1:1', '[::1]:1234'):
    assert processes.check_address(address) is None, address

  def join(*args):
    raise AssertionError('must not try to join')

  monkeypatch.setattr(processes, 'start', join)
  with pytest.raises(SystemExit) as e:
    inpaint.main(['--out', str(tmp_path / 'out'),
                  '--coordinator_address=nosuchhost.invalid:1234',
                  '--num_processes=2', '--process_id=0'])
  assert e.value.code == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f'error: {UNKNOWN_HOST}')
  result = run(['train.py', '--config', 'configs/tiny.py', '--workdir',
                str(tmp_path / 'w'),
                '--coordinator_address=nosuchhost.invalid:1234',
                '--num_processes=2', '--process_id=0'])
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f'error: {UNKNOWN_HOST}')
  assert not (tmp_path / 'w').exists() and not (tmp_path / 'out').exists()


def test_the_package_uses_public_jax_only():
  for path in sorted((REPO / 'jaxinpaint').glob('*.py')):
    assert 'jax._src' not in path.read_text(encoding='utf-8'), path


JOIN = """
import json, sys
import jax
from jaxinpaint.inpaint_job import processes

share = processes.start()
# The distributed service lived in start's child only: this JAX is local.
print(json.dumps(dict(index=share.index, count=share.count, run=share.run_id,
                      jax_count=jax.process_count(),
                      initialized=jax.distributed.is_initialized())))
"""


def test_cluster_detection_joins_and_leaves_a_one_process_jax():
  # --multiprocess: jax.distributed's detection of a SLURM job (faked: two
  # tasks on this host); its port comes from the job id.
  job = str(1000 + os.getpid() % 3000)
  procs = [subprocess.Popen(
      [sys.executable, '-c', JOIN], cwd=REPO, text=True,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      env=dict(os.environ, SLURM_JOB_ID=job, SLURM_NTASKS='2',
               SLURM_PROCID=str(i), SLURM_LOCALID=str(i),
               SLURM_STEP_NODELIST='localhost')) for i in range(2)]
  shares = []
  for code, out, err in finish(procs):
    assert code == 0, err[-3000:]
    shares.append(json.loads(out.strip().splitlines()[-1]))
  assert [s['index'] for s in shares] == [0, 1]
  assert [s['count'] for s in shares] == [2, 2]
  assert shares[0]['run'] == shares[1]['run'] and len(shares[0]['run']) == 16
  assert [s['jax_count'] for s in shares] == [1, 1]
  assert not any(s['initialized'] for s in shares)


def test_joining_without_process_0_fails_instead_of_hanging():
  port = 20000 + (os.getpid() + 3) % 20000
  with pytest.raises(RuntimeError):
    processes.start(f'127.0.0.1:{port}', 2, 1, timeout=3)
