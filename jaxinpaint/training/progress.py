"""What a training run reports as it goes, and when its time is up.

`Progress` is the progress bar and the metrics log: a step's metrics stay
on the device until `flush` pulls them, checks them for NaN/Inf and
appends them to metrics.jsonl (`workdir_files.RunFiles.log`). `TimeLimit`
is `config.train.time_limit`, counted by default from the process's start
(`process_start_time`); with a limit, the second flush predicts the step
where it will stop.
"""
import os
import time

import jax
import numpy as np
import tqdm

from jaxinpaint import errors

_IMPORT_TIME = time.time()


def process_start_time():
  """When this process started (Linux: /proc), else when this module was
  imported: the origin of `config.train.time_limit`."""
  try:
    with open('/proc/self/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    with open('/proc/uptime') as f:
      uptime = float(f.read().split()[0])
    return time.time() - uptime + int(fields[19]) / os.sysconf('SC_CLK_TCK')
  except (OSError, ValueError, IndexError):
    return _IMPORT_TIME


class TimeLimit:
  """`config.train.time_limit` on a clock; `deadline` is None for none.

  `clock`: the time source (seconds, any origin); None: the wall clock from
  the process's start; another one counts from this object's making.
  """

  def __init__(self, config, clock=None):
    if clock is None:
      clock, origin = time.time, process_start_time()
    else:
      origin = clock()
    self.clock, self.origin = clock, origin
    self.seconds = config.train.time_limit
    self.deadline = origin + self.seconds if self.seconds > 0 else None

  def reached(self):
    return self.deadline is not None and self.clock() >= self.deadline


class Progress:
  """The progress bar and the metrics log of a run from step `start`.

  `add` keeps a step's metrics on the device; `flush` pulls them (the loop
  calls it every log_every steps, before a checkpoint and at the end), so
  the host does not wait for every step. `workdir` is named in messages as
  the caller spelled it.
  """

  def __init__(self, config, workdir, files, time_limit: TimeLimit, start):
    self._config, self._workdir = config, workdir
    self._files, self._time_limit = files, time_limit
    self._bar = tqdm.tqdm(total=config.train.steps, initial=start,
                          disable=not files.is_chief, desc='train',
                          unit='it', dynamic_ncols=True)
    self._pending = []  # (step, on-device metrics) not yet pulled to the host
    # (time, step) of the first flush: the speed that predicts where the
    # time limit will stop is measured from there (compilation excluded).
    self._first_flush = []

  def add(self, step, metrics):
    self._pending.append((step, metrics))
    self._bar.update(1)

  def flush(self):
    """Pulls pending metrics; stops on NaN/Inf before anything is saved."""
    files = self._files
    pulled = [(s, {k: float(v) for k, v in m.items()})
              for s, m in jax.device_get(self._pending)]
    self._pending.clear()
    bad = _first_non_finite(pulled)
    if bad:
      kept = (f'the last good checkpoint (step {files.last_saved}) is kept '
              f'in {self._workdir}' if files.last_saved is not None
              else 'no checkpoint had been saved')
      raise errors.NonFiniteLossError(
          f'{bad[1]} is NaN/Inf at step {bad[0]}; training stopped; {kept}')
    if pulled:
      now = self._time_limit.clock()
      files.log([{'step': s, 'time': now, **m} for s, m in pulled])
      last = pulled[-1][1]
      self._bar.set_postfix(d=f"{last['critic_loss']:.3f}",
                            g=f"{last['g_loss']:.3f}",
                            w=f"{last.get('wasserstein', 0.0):.3f}")
      if self._time_limit.deadline is not None:
        self._report_expected_steps(now, pulled[-1][0])

  def _report_expected_steps(self, now, step):
    """At the second flush: the speed since the first, and the step the
    time limit will stop near (in metrics.jsonl and on the console)."""
    if not self._first_flush:
      self._first_flush.append((now, step))
      return
    if len(self._first_flush) > 1:
      return
    (t0, s0) = self._first_flush[0]
    deadline = self._time_limit.deadline
    rate = (step - s0) / max(now - t0, 1e-9)
    expected = min(self._config.train.steps,
                   int(step + rate * max(deadline - now, 0)))
    self._first_flush.append((now, step))
    self._files.log([{'step': step, 'it_per_s': rate,
                      'expected_final_step': expected}])
    if self._files.is_chief:
      self._bar.write(f'time limit: {rate:.2f} it/s, expect to stop near '
                      f'step {expected} in {deadline - now:.0f} s')

  def write(self, message):
    """Prints a line above the bar."""
    self._bar.write(message)

  def close(self):
    self._bar.close()


def _first_non_finite(pulled):
  """(step, name) of the first NaN/Inf among pulled metrics, or None."""
  for step, metrics in pulled:
    for name, value in metrics.items():
      if not np.isfinite(value):
        return step, name
  return None
