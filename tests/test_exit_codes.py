"""One exit-code convention for every CLI (docs/design.md): 2 = usage error
(a bad flag or input, one `error:` line, nothing written), 1 = failure
during the run, 130 = interrupted (Ctrl-C), 143 = terminated (SIGTERM)."""
import os
import signal
import subprocess
import sys

import pytest
from absl import logging

from helpers import REPO
from jaxinpaint import cli, errors


def _run(args):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('argv,message', [
    (['train.py', '--config', 'configs/tiny.py'], '--workdir is required'),
    (['train.py', '--config', 'configs/tiny.py', '--workdir', '{tmp}/w',
      '--config.train.steps=many'], 'many'),
    (['-m', 'jaxinpaint.cli.export', '--workdir', '{tmp}/none', '--out',
      '{tmp}/model'], 'not a jaxinpaint model directory'),
    (['inpaint.py', '--steps', '0', '--out', '{tmp}/out'],
     '--steps must be >= 1, got 0'),
    (['experiments/paper_tables.py', '--steps', '0', '--out', '{tmp}/out'],
     '--steps must be >= 1, got 0'),
    (['experiments/conditional_figure.py', '--limit', '0', '--out',
      '{tmp}/out'],
     '--limit must be >= 1, got 0'),
    (['bench/train_step.py', '--widths', '32,x'],
     '--widths 32,x: expected positive integers'),
    (['experiments/latent_recovery.py', '--constraints', 'box,ball'],
     "--constraints: unknown 'ball'"),
], ids=['train-missing-flag', 'train-bad-value', 'export', 'inpaint',
        'paper_tables', 'conditional_figure', 'train_step',
        'latent_recovery'])
def test_a_bad_flag_value_exits_2_with_one_line(argv, message, tmp_path):
  result = _run([a.format(tmp=tmp_path) for a in argv])
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  assert message in lines[0]
  assert not any(tmp_path.iterdir())  # nothing written


def test_run_checked_maps_errors_to_codes_and_restores_logging(capsys):
  previous = logging.get_verbosity()
  logging.set_verbosity(logging.DEBUG)
  try:
    during = []
    result = cli.run_checked(
        lambda args: args + 1,
        lambda args, checked: during.append(logging.get_verbosity()) or checked,
        1)
    assert result == 2 and during == [logging.WARNING]
    assert logging.get_verbosity() == logging.DEBUG

    def raising(error):
      def run(args, checked):
        raise error
      return run

    def prepare_raising(error):
      def prepare(args):
        raise error
      return prepare

    cases = [
        (prepare_raising(errors.InputError('bad --x')), None, 2, 'bad --x'),
        (prepare_raising(ValueError('image a.png: bad\nmore')), None, 2,
         'image a.png: bad'),
        (prepare_raising(KeyboardInterrupt()), None, 130,
         'interrupted; nothing was written'),
        (None, raising(errors.InputError('model x: cannot load')), 2,
         'model x: cannot load'),
        (None, raising(errors.RunError('cannot write y')), 1,
         'cannot write y'),
        (None, raising(errors.Interrupted('interrupted: 3 of 4 kept')), 130,
         'interrupted: 3 of 4 kept'),
        (None, raising(KeyboardInterrupt()), 130, 'interrupted'),
        (prepare_raising(errors.Terminated()), None, 143,
         'terminated; nothing was written'),
        (None, raising(errors.Terminated()), 143, 'terminated'),
    ]
    for prepare, run, code, message in cases:
      with pytest.raises(SystemExit) as e:
        cli.run_checked(prepare or (lambda args: args), run or
                        (lambda args, checked: checked), 0)
      assert e.value.code == code, message
      assert capsys.readouterr().err == f'error: {message}\n'
      assert logging.get_verbosity() == logging.DEBUG
  finally:
    logging.set_verbosity(previous)


def test_sigterm_exits_143_with_what_was_kept(capsys):
  def run(args, checked):
    try:
      os.kill(os.getpid(), signal.SIGTERM)  # raises Terminated here
      signal.pause()  # not reached: the handler raised
    except KeyboardInterrupt as e:
      raise errors.Interrupted('terminated by SIGTERM: 1 of 2 kept') from e

  before = signal.getsignal(signal.SIGTERM)
  with pytest.raises(SystemExit) as e:
    cli.run_checked(lambda args: args, run, 0)
  assert e.value.code == 143
  assert capsys.readouterr().err == (
      'error: terminated by SIGTERM: 1 of 2 kept\n')
  assert signal.getsignal(signal.SIGTERM) is before  # put back
