"""Several processes (hosts) completing one input list together.

`inpaint.py` started with jax.distributed's flags (as `train.py` is) splits
its images into contiguous blocks by process index (`Share.rows`): an
image's result depends only on (y, M, seed, its index), so the split changes
no result. Each process completes and writes only its own block, on the
devices it sees; the processes never run a collective together, so a
process that fails or hangs cannot hang the others.

Joining (`start`) happens in a short-lived child process, before this
process makes its JAX backend: the child calls the public
`jax.distributed.initialize` (with the flags, or the cluster's detection
for --multiprocess) on the CPU, reads `jax.process_index()` and
`jax.process_count()`, and agrees on a run token with one
`multihost_utils.broadcast_one_to_all` of process 0's random bytes; all the
processes are alive then, so it cannot hang (and it is bounded by a
timeout). The child then exits, and with it the distributed service: this
process's JAX is a one-process JAX on its local devices (no heartbeats, no
barrier at exit, and orbax loads the model without cross-process barriers).

Instead of a barrier, each process keeps a status log in
`OUT/.processes/` (a line appended after each batch, at the end and on
failure), and process 0 waits for all of them before it writes the files of
the whole run (grid.png, metrics.csv, summary.json). A status names its run
(the token of the start), so files of an earlier run are never taken for
this one's.
"""
import contextlib
import dataclasses
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from jaxinpaint import atomic, errors
from jaxinpaint.inpaint_job import outputs

STATUS_DIR = '.processes'
RUNNING, DONE, FAILED = 'running', 'done', 'failed'


@dataclasses.dataclass(frozen=True)
class Share:
  """One process's part of a run: its index, the process count, the run."""
  index: int
  count: int
  run_id: str

  def rows(self, n: int) -> np.ndarray:
    """This process's images among n: a contiguous block, the blocks of all
    processes in index order, their sizes differing by at most one."""
    return np.arange(self.index * n // self.count,
                     (self.index + 1) * n // self.count)


def check_flags(coordinator_address, num_processes, process_id,
                auto: bool) -> str | None:
  """What is wrong with the multi-process flags (None: nothing)."""
  given = [f for f, v in (('--coordinator_address', coordinator_address),
                          ('--num_processes', num_processes),
                          ('--process_id', process_id)) if v is not None]
  if auto and given:
    return (f'--multiprocess detects the cluster itself: drop '
            f'{" and ".join(given)}')
  if given and len(given) < 3:
    return ('--coordinator_address, --num_processes and --process_id go '
            f'together: only {" and ".join(given)} given')
  if coordinator_address is not None and (
      problem := check_address(coordinator_address)):
    return problem
  if num_processes is not None and num_processes < 1:
    return f'--num_processes must be >= 1, got {num_processes}'
  if process_id is not None and not 0 <= process_id < num_processes:
    return (f'--process_id must be from 0 to --num_processes - 1 = '
            f'{num_processes - 1}, got {process_id}')
  return None


def join(coordinator_address=None, num_processes=None, process_id=None,
         multiprocess: bool = False) -> Share | None:
  """The multi-process flags -> this process's `Share` (None: one process,
  no flag given). Raises errors.InputError for flags that do not go
  together, errors.RunError when the processes cannot join."""
  problem = check_flags(coordinator_address, num_processes, process_id,
                        multiprocess)
  if problem:
    raise errors.InputError(problem)
  if coordinator_address is None and not multiprocess:
    return None
  try:
    return start(coordinator_address, num_processes, process_id)
  except Exception as e:  # pylint: disable=broad-except
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise errors.RunError('cannot join the other processes with '
                          f'jax.distributed: {first}') from e


def check_address(address: str) -> str | None:
  """What is wrong with a --coordinator_address (None: nothing): it must be
  HOST:PORT, the port a number from 1 to 65535 (an IPv6 host in []), and
  the host must resolve (jax.distributed would retry an unknown host for
  its whole timeout, then fail in C++)."""
  host, sep, port = address.rpartition(':')
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    return (f'--coordinator_address {address!r}: expected HOST:PORT of '
            'process 0, e.g. 10.0.0.1:1234')
  host = host[1:-1] if host.startswith('[') and host.endswith(']') else host
  try:
    socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
  except (OSError, UnicodeError) as e:  # socket.gaierror is an OSError
    return (f'--coordinator_address {address!r}: cannot resolve the host '
            f'{host!r} ({getattr(e, "strerror", None) or e}); expected '
            'HOST:PORT of process 0, e.g. 10.0.0.1:1234')
  return None


def start(coordinator_address=None, num_processes=None, process_id=None,
          timeout: float = 300) -> Share:
  """Joins the processes and agrees on a run token (see the module doc):
  with the three flags, or with none for the cluster's detection.

  Runs JAX's distributed service in a child process only, so this process's
  JAX stays a one-process one; call it before any JAX computation anyway
  (a GPU is not touched: the child runs on the CPU). Raises RuntimeError
  with the child's last error line when the processes cannot join within
  `timeout` seconds.
  """
  request = {}
  if coordinator_address is not None:
    request = dict(coordinator_address=coordinator_address,
                   num_processes=num_processes, process_id=process_id)
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  try:
    child = subprocess.run(
        [sys.executable, '-m', 'jaxinpaint.inpaint_job.processes',
         json.dumps(request), str(int(timeout))], env=env,
        capture_output=True, text=True, timeout=timeout + 60)
  except subprocess.TimeoutExpired:
    raise RuntimeError(f'the processes did not join within {timeout:g} s')
  if child.returncode != 0:
    lines = [l for l in child.stderr.strip().splitlines()
             if not l.startswith('[Gloo]')] or [f'exit {child.returncode}']
    raise RuntimeError(lines[-1].strip())
  joined = json.loads(child.stdout.strip().splitlines()[-1])
  if process_id is not None:  # the flags decide, the child agrees
    assert (joined['index'], joined['count']) == (process_id, num_processes)
  return Share(joined['index'], joined['count'], joined['run'])


def _join(request: dict, timeout: int) -> dict:
  """The child of `start`: joins, agrees on the token, prints them."""
  # pylint: disable=g-import-not-at-top
  import jax
  from jax.experimental import multihost_utils
  # pylint: enable=g-import-not-at-top
  jax.distributed.initialize(**request, initialization_timeout=timeout)
  token = np.frombuffer(secrets.token_bytes(8), np.uint8)
  # Every process's token; all keep process 0's.
  token = np.asarray(multihost_utils.broadcast_one_to_all(token))
  return dict(index=jax.process_index(), count=jax.process_count(),
              run=bytes(token.astype(np.uint8)).hex())


def status_path(out: Path, index: int) -> Path:
  return Path(out) / STATUS_DIR / f'process-{index}.jsonl'


class Status:
  """This process's status file: a log of JSON lines, one per change (the
  start, each batch with the files it wrote, the end or a failure), so it
  grows linearly with the images, never rewritten whole. Its state is the
  union of its lines, later ones winning (`read_status`)."""

  def __init__(self, out: Path, share: Share):
    self.path, self.share = status_path(out, share.index), share
    self._started = False

  def write(self, state: str, **fields):
    line = json.dumps(dict(
        run=self.share.run_id, process=self.share.index,
        processes=self.share.count, state=state, time=time.time(),
        **fields)) + '\n'
    if not self._started:
      self._started = True
      if read_status(self.path).get('run') != self.share.run_id:
        atomic.write_text(self.path, line)  # an earlier run's log goes
        return
    # One write of a whole line: a reader sees it all or (mid-write) a cut
    # last line, which it ignores.
    with open(self.path, 'a', encoding='utf-8') as f:
      f.write(line)


@contextlib.contextmanager
def failure_recorded(out: Path, share: Share | None):
  """Records any exception (Ctrl-C too) as this process's failure in its
  status log, for process 0 to report, then lets it go on to the CLI's exit
  codes. A one-process run (`share` None) records nothing."""
  try:
    yield
  except BaseException as e:
    if share is not None:
      message = str(e).strip().splitlines()[0] if str(e).strip() else ''
      try:
        Status(out, share).write(FAILED, error=message or type(e).__name__)
      except OSError:
        pass  # process 0 then reports this process as silent
    raise


def read_status(path: Path) -> dict:
  """The state of a status log ({} if none): its lines merged in order,
  later values winning, but 'written' (each batch's files) accumulated."""
  status, written = {}, []
  try:
    text = path.read_text(encoding='utf-8')
  except OSError:
    return status  # not written yet
  for line in text.splitlines():
    try:
      fields = json.loads(line)
    except ValueError:
      break  # the last line, being written
    written += fields.pop('written', [])
    status.update(fields)
  return dict(status, written=written) if status else status


def read_statuses(out: Path, share: Share) -> dict:
  """{process index: status} of the processes of this run that wrote one."""
  statuses = {}
  for i in range(share.count):
    status = read_status(status_path(out, i))
    if status.get('run') == share.run_id:
      statuses[i] = status
  return statuses


def wait_for_all(out: Path, share: Share, timeout: float, on_update=None,
                 poll: float = 0.5) -> list:
  """Process 0: waits until every process is done, then returns their
  statuses in index order.

  `on_update(statuses)` is called whenever a status changed. Raises
  errors.RunError naming the failed processes (once no process is still
  running) or, after `timeout` seconds without any change, the silent ones.
  """
  seen, last_change = None, time.monotonic()
  while True:
    statuses = read_statuses(out, share)
    if statuses != seen:
      seen, last_change = statuses, time.monotonic()
      if on_update is not None:
        on_update(statuses)
    states = [statuses.get(i, {}).get('state') for i in range(share.count)]
    if all(s in (DONE, FAILED) for s in states):
      failed = [i for i, s in enumerate(states) if s == FAILED]
      if failed:
        log = outputs.text(status_path(out, failed[0]))
        raise errors.RunError('; '.join(
            f'process {i} of {share.count} failed: {statuses[i]["error"]}'
            for i in failed) + f' (see {log}); the other processes\' images '
            'are kept: rerun the same command on every process with --resume '
            'to do the rest')
      return [statuses[i] for i in range(share.count)]
    if time.monotonic() - last_change > timeout:
      silent = [f'process {i} ({s or "no status file"})'
                for i, s in enumerate(states) if s != DONE]
      raise errors.RunError(
          f'no news for {timeout:g} s from {", ".join(silent)} of '
          f'{share.count} (status files in '
          f'{outputs.text(Path(out) / STATUS_DIR)}/); their finished images '
          'are kept: rerun the same command with --resume')
    time.sleep(poll)


class Progress:
  """Process 0's bar over the images of all processes: each one's count is
  that of its status file, i.e. at its last finished batch. Other
  processes show none."""

  def __init__(self, n: int, share: Share, out: Path):
    import tqdm  # pylint: disable=g-import-not-at-top
    self.share, self.out = share, out
    self.bar = tqdm.tqdm(total=n, desc='completing (all processes)',
                         unit='image', leave=False,
                         disable=share.index != 0)

  def update(self, statuses=None):
    if self.bar.disable:
      return
    if statuses is None:
      statuses = read_statuses(self.out, self.share)
    self.bar.n = sum(s.get('resumed', 0) + s.get('completed', 0)
                     for s in statuses.values())
    self.bar.refresh()

  def close(self):
    self.bar.close()


def save_arrays(path: Path, **arrays):
  """Arrays as an .npz, atomically (for process 0 to read)."""
  def write(tmp):
    with open(tmp, 'wb') as f:  # a file object: savez adds no '.npz'
      np.savez(f, **arrays)
  atomic.write(path, write)


def grid_rows_path(out: Path, index: int) -> Path:
  """Where a process leaves G(z) and the blend of its rows of grid.png."""
  return Path(out) / STATUS_DIR / f'grid-{index}.npz'


if __name__ == '__main__':
  # `start`'s child:
  # python -m jaxinpaint.inpaint_job.processes REQUEST_JSON TIMEOUT.
  print(json.dumps(_join(json.loads(sys.argv[1]), int(sys.argv[2]))))
