"""Command-line entry points (`train.py`, `jaxinpaint-train`, ...).

Thin wrappers: parse flags, call the library, turn expected failures into
one line on stderr and an exit code, the same in every jaxinpaint CLI
(docs/design.md): 2 = usage error (a bad flag or input, found before any
work), 1 = failure during the run, 130 = interrupted (Ctrl-C), 143 =
terminated (SIGTERM).
"""
import contextlib
import signal
import sys
import threading

from absl import app, flags, logging
from ml_collections import config_flags

USAGE, FAILURE, INTERRUPTED, TERMINATED = 2, 1, 130, 143  # exit codes


class Terminated(KeyboardInterrupt):
  """SIGTERM, raised in the main thread while `sigterm_raises` is entered:
  a KeyboardInterrupt, so that what handles Ctrl-C (keeping finished work,
  cleaning up) handles it too; the exit code is TERMINATED."""


def _raise_terminated(signum, frame):
  del signum, frame
  raise Terminated()


@contextlib.contextmanager
def sigterm_raises():
  """While entered (in the main thread), SIGTERM raises Terminated instead
  of ending the process at once, without a word or a clean-up."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = signal.signal(signal.SIGTERM, _raise_terminated)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)


def interrupt_code(error: BaseException) -> int:
  """TERMINATED for a Terminated (or what it caused), else INTERRUPTED."""
  terminated = isinstance(error, Terminated) or isinstance(
      error.__cause__, Terminated)
  return TERMINATED if terminated else INTERRUPTED
_USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError)


def fail(message, code=USAGE):
  """A CLI's end: one `error:` line on stderr and SystemExit(code)."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def run_checked(prepare_fn, run_fn, args):
  """`run_fn(args, prepare_fn(args))` with the exit-code convention, for the
  argparse CLIs (inpaint.py and the bench/ and experiments/ scripts).

  `prepare_fn` checks every input and writes nothing: errors.InputError, a
  ValueError or a FileNotFoundError there (the loaders name the file) exit
  with USAGE; during `run_fn`, errors.InputError exits with USAGE,
  errors.RunError with FAILURE, Ctrl-C with INTERRUPTED and SIGTERM with
  TERMINATED (the message of an errors.Interrupted says what was kept).
  absl logging is quietened during the run (orbax logs every restore at
  INFO) and restored after.
  """
  with sigterm_raises():
    return _run_checked(prepare_fn, run_fn, args)


def _run_checked(prepare_fn, run_fn, args):
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import errors
  try:
    checked = prepare_fn(args)
  except errors.InputError as e:
    fail(str(e))
  except (ValueError, FileNotFoundError) as e:
    fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
  except KeyboardInterrupt as e:
    code = interrupt_code(e)
    fail(f'{"terminated" if code == TERMINATED else "interrupted"}; nothing '
         'was written', code)
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)
  try:
    return run_fn(args, checked)
  except errors.InputError as e:  # e.g. a model that does not load
    fail(str(e))
  except errors.RunError as e:
    fail(str(e), FAILURE)
  except KeyboardInterrupt as e:
    code = interrupt_code(e)
    fail(str(e) if isinstance(e, errors.Interrupted) else
         'terminated' if code == TERMINATED else 'interrupted', code)
  finally:
    logging.set_verbosity(verbosity)


TRAIN_USAGE = r"""Trains a WGAN-GP (or the DCGAN baseline) for image completion.

  python train.py --config configs/celeba64.py --workdir runs/celeba64
  python train.py --config configs/tiny.py --workdir runs/tiny \
      --config.train.steps=20

Rerunning the same command resumes from the latest checkpoint. Any config
value can be overridden with --config.<key>=<value> (the keys are those of
jaxinpaint/config.py); --helpfull lists every flag of the libraries too.
"""

# The multi-process flags, spelled as inpaint.py spells them; the
# underscore forms stay as aliases.
_PROCESS_FLAGS = {'coordinator_address': 'coordinator-address',
                  'num_processes': 'num-processes',
                  'process_id': 'process-id'}


def _define_train_flags():
  config_flags.DEFINE_config_file(
      'config', None,
      'Training config file, e.g. configs/celeba64.py; any value can be '
      'overridden, e.g. --config.train.steps=200 --config.model.width=32.',
      lock_config=True)
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


def _train(argv):
  """The train CLI's main (absl's `app.run` calls it after parsing flags)."""
  del argv
  logging.set_verbosity(logging.WARNING)  # only a CLI's main does this
  import jax  # after flag parsing: --help must not initialize a backend
  from jaxinpaint import data, models, training, workdir
  FLAGS = flags.FLAGS
  config = _load_config_flag()
  if (FLAGS.coordinator_address or FLAGS.multiprocess
      or config.train.multiprocess):
    kwargs = {}
    if FLAGS.coordinator_address:
      from jaxinpaint import processes  # pylint: disable=g-import-not-at-top
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
  try:
    with sigterm_raises():
      training.train_and_evaluate(config, FLAGS.workdir)
  except training.StoppedBySignal as e:
    fail(str(e), TERMINATED if e.signum == signal.SIGTERM else INTERRUPTED)
  except KeyboardInterrupt as e:
    # Outside the training loop (loading, compiling, the export): the
    # latest checkpoint is all there is; an export is never half-written.
    code = interrupt_code(e)
    fail(f'{"terminated by SIGTERM" if code == TERMINATED else "interrupted"}'
         f' outside the training loop; rerun the same command to resume '
         f'from the latest checkpoint in {FLAGS.workdir}', code)
  except (training.NonFiniteLossError, workdir.WriteError) as e:
    fail(str(e), FAILURE)
  except (*_USER_ERRORS, data.CorruptImageError) as e:
    # Bad config values, data or work dir: usage errors.
    fail(str(e))
  print(f'done: checkpoints, samples and metrics.jsonl in {FLAGS.workdir}')


def parse_flags(argv):
  """absl's parser, with one-line errors (exit code 2) instead of
  tracebacks: `app.run(main, flags_parser=parse_flags)`."""
  try:
    return flags.FLAGS(argv)
  except SystemExit as e:
    # absl's help flags print and exit 1; help that was asked for is a
    # success, as in inpaint.py (argparse).
    if e.code == 1 and {'-?', '-h', '--help', '--helpshort', '--helpfull',
                        '--helpxml'} & set(argv[1:]):
      sys.exit(0)
    raise
  except (AttributeError, KeyError) as e:  # ConfigDict: no such key
    # ConfigDict wraps a KeyError in an AttributeError, and str() of a
    # KeyError is the repr of its text, '\n' and all; the text is the key,
    # then maybe a suggestion on a line of its own.
    cause = e
    while cause.args and isinstance(cause.args[0], BaseException):
      cause = cause.args[0]
    text = (cause.args[0] if cause.args and isinstance(cause.args[0], str)
            else str(cause))
    key, *hint = text.strip().splitlines() or ['']
    hint = ' '.join(line.strip() for line in hint)
    fail(f'unknown config key {key} in a --config.* override'
          + (f' ({hint})' if hint else '')
          + '; the keys are those of jaxinpaint/config.py')
  except (flags.Error, ValueError, TypeError) as e:
    fail(str(e).splitlines()[0])


def _prepare_host():
  """What every CLI does first: on a CPU, reuse freed memory instead of
  page-faulting each XLA execution's temporaries afresh (~10% of a
  completion step; `host_memory`)."""
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import host_memory
  host_memory.reuse_freed_memory()


def train_main():
  _prepare_host()
  # absl's --help prints the main module's docstring: the same text for
  # train.py and the installed jaxinpaint-train (whose wrapper has none).
  sys.modules['__main__'].__doc__ = TRAIN_USAGE
  _define_train_flags()
  flags.mark_flags_as_required(['config'])
  app.run(_train, flags_parser=parse_flags)


def inpaint_main():
  _prepare_host()
  from jaxinpaint import inpaint_cli
  inpaint_cli.main()
