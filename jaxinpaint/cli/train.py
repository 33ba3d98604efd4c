"""`train.py` / `jaxinpaint-train`: the training command line (absl flags).

Parses the config file and its overrides, joins the processes of a
multi-host run, then calls `training.train_and_evaluate`; expected failures
end with one `error: ...` line and the exit codes of `cli`.
"""
import os
import sys
import traceback
import types

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from jaxinpaint import cli, errors
from jaxinpaint.cli.common import fail, TERMINATED

TRAIN_USAGE = r"""Trains a WGAN-GP (or the DCGAN baseline) for image completion.

  python train.py --config configs/celeba64.py --workdir runs/celeba64
  python train.py --config configs/tiny.py --workdir runs/tiny \
      --config.train.steps=20

Rerunning the same command resumes from the latest checkpoint. Any config
value can be overridden with --config.<key>=<value> (the keys are those of
jaxinpaint/training/config_schema.py); --helpfull lists every flag of the
libraries too.
"""

# The multi-process flags, spelled as inpaint.py spells them; the
# underscore forms stay as aliases.
_PROCESS_FLAGS = {'coordinator_address': 'coordinator-address',
                  'num_processes': 'num-processes',
                  'process_id': 'process-id'}


class _ConfigFileParser:
  """config_flags' parser of --config (`parser`), with one line for a file
  that opens but gives no config (a syntax error, no get_config(), an
  exception, another type): absl's IllegalFlagValueError, which absl
  passes on as it is and `cli.parse_flags` prints as one `error:` line. A
  file that cannot be opened stays config_flags' deferred error
  (`_load_config_flag`). Everything else is `parser`'s."""

  def __init__(self, parser):
    self._parser = parser

  def __getattr__(self, name):
    return getattr(self._parser, name)

  def parse(self, argument):
    path = argument.split(':', 1)[0]  # config_flags' FILE:ARGUMENT
    try:
      config = self._parser.parse(argument)
    except Exception as e:  # pylint: disable=broad-except
      # The file's own code ran: it may raise anything.
      raise flags.IllegalFlagValueError(
          f'--config {path}: cannot load it: {_load_problem(path, e)}'
      ) from e
    if not isinstance(config, ml_collections.ConfigDict) and not (
        _deferred_error(config)):
      kind = type(config).__name__
      kind = 'None' if config is None else (
          f'{"an" if kind[0] in "aeiou" else "a"} {kind}')
      raise flags.IllegalFlagValueError(
          f'--config {path}: get_config() returned {kind}, expected an '
          'ml_collections.ConfigDict (start from jaxinpaint.training.'
          'config_schema.base_config(), as configs/*.py do)')
    return config


def _deferred_error(config) -> bool:
  """Whether `config` is config_flags' stand-in for a file it could not
  open: it raises OSError on any attribute."""
  try:
    getattr(config, 'lock', None)
  except OSError:
    return True
  return False


def _load_problem(path, error) -> str:
  """What went wrong loading the config file `path`, in a few words with
  the line of the file where it did."""
  if (isinstance(error, (TypeError, ValueError)) and error.__context__
      and str(error).startswith('Error whilst parsing config file')):
    error = error.__context__  # config_flags put its traceback in the text
  if (isinstance(error, AttributeError) and error.name == 'get_config'
      and isinstance(error.obj, types.ModuleType)):
    return ('it defines no get_config() (a config file returns its config '
            'from get_config(), as configs/*.py do)')
  same = lambda name: os.path.realpath(name or '') == os.path.realpath(path)
  if isinstance(error, SyntaxError):
    where = (f'line {error.lineno}' if same(error.filename)
             else f'{error.filename}, line {error.lineno}')
    return f'{where}: SyntaxError: {error.msg}'
  text = (str(error).strip().splitlines() or [''])[0]
  what = f'{type(error).__name__}: {text}' if text else type(error).__name__
  lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
           if same(frame.filename)]
  return f'line {lines[-1]}: {what}' if lines else what


def _define_train_flags():
  config_flags.DEFINE_config_file(
      'config', None,
      'Training config file, e.g. configs/celeba64.py; any value can be '
      'overridden, e.g. --config.train.steps=200 --config.model.width=32.',
      lock_config=True)
  flags.FLAGS['config'].parser = _ConfigFileParser(
      flags.FLAGS['config'].parser)
  flags.DEFINE_string('workdir', None,
                      'Where checkpoints, metrics.jsonl and samples/ go. '
                      'Rerunning with the same work dir resumes.')
  flags.DEFINE_bool('summary', False,
                    'Print the networks and parameter counts, then exit.')
  flags.DEFINE_string(
      'coordinator_address', None,
      'Multi-process: host:port of process 0; with --num_processes and '
      '--process_id. Also spelled --coordinator-address, as in inpaint.py.')
  flags.DEFINE_integer('num_processes', None, 'Multi-process: the process '
                       'count. Also --num-processes.')
  flags.DEFINE_integer('process_id', None,
                       'Multi-process: this process, 0 .. --num_processes - '
                       '1. Also --process-id.')
  flags.DEFINE_bool(
      'multiprocess', False,
      'Multi-process: jax.distributed.initialize() detects the processes '
      '(SLURM, TPU pods, ...) instead of the three flags above; the same as '
      '--config.train.multiprocess=True.')
  for name, alias in _PROCESS_FLAGS.items():
    flags.DEFINE_alias(alias, name)
  # absl's --help lists only the main module's key flags, and ours are
  # defined here: name them as the main module's (train.py's or the console
  # script's), which absl looks up by sys.argv[0].
  for name in ('config', 'workdir', 'summary', 'multiprocess',
               *_PROCESS_FLAGS):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])


def _load_config_flag():
  try:
    config = flags.FLAGS.config
    config.train  # config_flags reports a failed load only on first use
    return config
  except OSError as e:
    path = config_flags.get_config_filename(flags.FLAGS['config'])
    fail(f'--config {path}: cannot load it '
         f'({str(e).strip().splitlines()[-1].strip()})')


def _run_training(args, _):
  """train_and_evaluate with its failures in the library's error kinds, for
  `cli.run_checked`: a bad config value, data set or work dir (a ValueError
  or a missing file, found before any step) is a usage error, and Ctrl-C or
  SIGTERM outside the training loop (loading, compiling, the export) says
  what is kept (the loop's own stop says it, `errors.StoppedBySignal`)."""
  from jaxinpaint import training  # pylint: disable=g-import-not-at-top
  config, workdir = args
  try:
    training.train_and_evaluate(config, workdir)
  except errors.InputError:
    raise
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    raise errors.InputError(str(e)) from e
  except KeyboardInterrupt as e:
    if isinstance(e, errors.Interrupted):
      raise
    how = ('terminated by SIGTERM' if cli.interrupt_code(e) == TERMINATED
           else 'interrupted')
    raise errors.Interrupted(
        f'{how} outside the training loop; rerun the same command to resume '
        f'from the latest checkpoint in {workdir}') from e


def _train(argv):
  """The train CLI's main (absl's `app.run` calls it after parsing flags)."""
  del argv
  logging.set_verbosity(logging.WARNING)  # only a CLI's main does this
  import jax  # after flag parsing: --help must not initialize a backend
  from jaxinpaint import models
  FLAGS = flags.FLAGS
  config = _load_config_flag()
  if (FLAGS.coordinator_address or FLAGS.multiprocess
      or config.train.multiprocess):
    kwargs = {}
    if FLAGS.coordinator_address:
      # pylint: disable-next=g-import-not-at-top
      from jaxinpaint.inpaint_job import processes
      problem = processes.check_address(FLAGS.coordinator_address)
      if problem:
        fail(problem)
      kwargs = dict(coordinator_address=FLAGS.coordinator_address,
                    num_processes=FLAGS.num_processes,
                    process_id=FLAGS.process_id)
    jax.distributed.initialize(**kwargs)
  if FLAGS.summary:
    print(models.summary(config.model))
    return
  if not FLAGS.workdir:
    fail('--workdir is required (where checkpoints and samples go)')
  cli.run_checked(lambda args: None, _run_training, (config, FLAGS.workdir))
  print(f'done: checkpoints, samples and metrics.jsonl in {FLAGS.workdir}')


def main():
  cli.prepare_host()
  # absl's --help prints the main module's docstring: the same text for
  # train.py and the installed jaxinpaint-train (whose wrapper has none).
  sys.modules['__main__'].__doc__ = TRAIN_USAGE
  _define_train_flags()
  flags.mark_flags_as_required(['config'])
  app.run(_train, flags_parser=cli.parse_flags)
