"""The CLIs' --help and flag spellings (train.py and inpaint.py alike)."""
import pytest

from jaxinpaint.cli import inpaint
from jaxinpaint.models import loading
from tests.helpers import run


def test_train_help_shows_its_flags_and_the_unbroken_example():
  result = run(['train.py', '--help'], timeout=120)
  assert result.returncode == 0, result.stderr
  text = result.stdout
  # The example keeps its continuation line (a backslash-newline in a plain
  # docstring would have joined the two lines).
  assert ('--workdir runs/tiny \\\n      --config.train.steps=20' in text)
  for flag in ('--config:', '--workdir:', '--[no]multiprocess:',
               '--coordinator_address:', '--num_processes:', '--process_id:'):
    assert flag in text, flag
  assert 'Also --num-processes' in text


def test_train_takes_the_dashed_process_flags_as_inpaint_does():
  # --summary exits before any distributed start: parsing is what is tested.
  result = run(['train.py', '--config', 'configs/tiny.py', '--summary',
                '--num-processes=3', '--process-id=1'], timeout=300)
  assert result.returncode == 0, result.stderr
  result = run(['train.py', '--config', 'configs/tiny.py', '--summary',
                '--num-processes=x'], timeout=300)
  assert result.returncode == 2
  assert "flag --num_processes=x: invalid literal for int() with base 10: 'x'" \
      in result.stderr


@pytest.mark.parametrize('spelling', ['dash', 'underscore'])
def test_inpaint_takes_both_spellings_of_the_process_flags(spelling):
  names = ('coordinator-address', 'num-processes', 'process-id')
  if spelling == 'underscore':
    names = tuple(n.replace('-', '_') for n in names)
  args = inpaint.build_parser().parse_args(
      [f'--{names[0]}=h:1', f'--{names[1]}=2', f'--{names[2]}=1'])
  assert (args.coordinator_address, args.num_processes,
          args.process_id) == ('h:1', 2, 1)


def test_inpaint_help_names_every_shipped_model_and_real_metavars(capsys):
  with pytest.raises(SystemExit):
    inpaint.main(['--help'])
  text = ' '.join(capsys.readouterr().out.split())
  shipped = loading.shipped_model_names()
  assert len(shipped) >= 6
  for name in shipped:
    assert name in text, name
  for shown in ('--steps N', '--restarts K', '--batch-size N', '--seed N'):
    assert shown in text
  assert 'STEPS' not in text and 'RESTARTS' not in text
