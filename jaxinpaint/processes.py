"""Several processes (hosts) completing one input list together.

`inpaint.py` started with jax.distributed's flags (as `train.py` is) splits
its images into contiguous blocks by process index (`Share.rows`): an
image's result depends only on (y, M, seed, its index), so the split changes
no result. Each process completes and writes only its own block, on the
devices it sees; jax.distributed serves only to start them (`start`), so a
process that fails or hangs cannot hang the others.

Instead of a barrier, each process keeps a small status file in
`OUT/.processes/` (written atomically after each batch, at the end and on
failure), and process 0 waits for all of them before it writes the files of
the whole run (grid.png, metrics.csv, summary.json). A status names its run
(a token process 0 shares through jax.distributed at the start), so files of an earlier run are
never taken for this one's.
"""
import contextlib
import dataclasses
import json
import secrets
import time
from pathlib import Path

import numpy as np

from jaxinpaint import outputs

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
  if num_processes is not None and num_processes < 1:
    return f'--num_processes must be >= 1, got {num_processes}'
  if process_id is not None and not 0 <= process_id < num_processes:
    return (f'--process_id must be from 0 to --num_processes - 1 = '
            f'{num_processes - 1}, got {process_id}')
  return None


def start(coordinator_address=None, num_processes=None,
          process_id=None) -> Share:
  """Joins the processes with `jax.distributed.initialize` (the arguments,
  or the cluster's detection when all are None), agrees on a run token and
  leaves the distributed service again, all before JAX makes its backend.

  From then on the processes share nothing but the output folder: each
  one's JAX is a one-process JAX on its local devices (no heartbeats, no
  barrier at exit, and orbax loads the model without cross-process
  barriers), so a failed process cannot stop or hang the others. Call it
  before any JAX computation.
  """
  import jax  # pylint: disable=g-import-not-at-top
  # The client's key-value store has no public API; orbax uses it the same
  # way. A collective would need the backend, which must not be made yet.
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  kwargs = {}
  if coordinator_address is not None:
    kwargs = dict(coordinator_address=coordinator_address,
                  num_processes=num_processes, process_id=process_id)
  jax.distributed.initialize(**kwargs)
  state = distributed.global_state
  index, count = int(state.process_id), int(state.num_processes)
  if index == 0:
    state.client.key_value_set('jaxinpaint/inpaint/run', secrets.token_hex(8))
  run_id = state.client.blocking_key_value_get('jaxinpaint/inpaint/run',
                                               600_000)
  # Every process is alive here, so this barrier cannot hang.
  jax.distributed.shutdown()
  # The backend, made later, is then a one-process one (its process index
  # and count come from this state, which shutdown keeps).
  state.process_id, state.num_processes = 0, 1
  return Share(index, count, run_id)


def status_path(out: Path, index: int) -> Path:
  return Path(out) / STATUS_DIR / f'process-{index}.json'


class Status:
  """This process's status file: its state and what it wrote."""

  def __init__(self, out: Path, share: Share):
    self.path, self.share = status_path(out, share.index), share
    self.fields = {}

  def write(self, state: str, **fields):
    self.fields.update(fields)
    outputs.write_json(self.path, dict(
        run=self.share.run_id, process=self.share.index,
        processes=self.share.count, state=state, time=time.time(),
        **self.fields))

  @contextlib.contextmanager
  def failure_recorded(self):
    """Records any exception (Ctrl-C too) as this process's failure, then
    lets it go on to the CLI's exit codes."""
    try:
      yield
    except BaseException as e:
      message = str(e).strip().splitlines()[0] if str(e).strip() else ''
      message = message or type(e).__name__
      try:
        self.write(FAILED, error=message)
      except OSError:
        pass  # process 0 then reports this process as silent
      raise


def read_statuses(out: Path, share: Share) -> dict:
  """{process index: status} of the processes of this run that wrote one."""
  statuses = {}
  for i in range(share.count):
    try:
      status = json.loads(status_path(out, i).read_text(encoding='utf-8'))
    except (OSError, ValueError):
      continue  # not written yet (the write itself is atomic)
    if status.get('run') == share.run_id:
      statuses[i] = status
  return statuses


def wait_for_all(out: Path, share: Share, timeout: float, on_update=None,
                 poll: float = 0.5) -> list:
  """Process 0: waits until every process is done, then returns their
  statuses in index order.

  `on_update(statuses)` is called whenever a status changed. Raises
  outputs.RunError naming the failed processes (once no process is still
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
        raise outputs.RunError('; '.join(
            f'process {i} of {share.count} failed: {statuses[i]["error"]}'
            for i in failed) + f' (see {outputs.text(status_path(out, failed[0]))}'
            '); the other processes\' images are kept: rerun the same '
            'command on every process with --resume to do the rest')
      return [statuses[i] for i in range(share.count)]
    if time.monotonic() - last_change > timeout:
      silent = [f'process {i} ({s or "no status file"})'
                for i, s in enumerate(states) if s != DONE]
      raise outputs.RunError(
          f'no news for {timeout:g} s from {", ".join(silent)} of '
          f'{share.count} (status files in '
          f'{outputs.text(Path(out) / STATUS_DIR)}/); their finished images '
          'are kept: rerun the same command with --resume')
    time.sleep(poll)


def save_arrays(path: Path, **arrays):
  """Arrays as an .npz, atomically (for process 0 to read)."""
  def write(tmp):
    with open(tmp, 'wb') as f:  # a file object: savez adds no '.npz'
      np.savez(f, **arrays)
  outputs.write_atomically(path, write)


def grid_rows_path(out: Path, index: int) -> Path:
  """Where a process leaves G(z) and the blend of its rows of grid.png."""
  return Path(out) / STATUS_DIR / f'grid-{index}.npz'
