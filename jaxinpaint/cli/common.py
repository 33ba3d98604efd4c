"""What every jaxinpaint command line shares (`cli.train`, `cli.inpaint`,
`cli.export`, the experiments' and benchmarks' scripts).

Expected failures become one line on stderr and an exit code, the same in
every jaxinpaint CLI
(docs/design.md): 2 = usage error (a bad flag or input, found before any
work), 1 = failure during the run, 130 = interrupted (Ctrl-C), 143 =
terminated (SIGTERM). The library's notes (WARNINGs on the `jaxinpaint`
loggers) are plain lines on stderr too: the CLIs set that up
(`prepare_host`); library modules only log, and configure no logging.
"""
import contextlib
import logging
import signal
import sys
import threading

from absl import flags
from absl import logging as absl_logging

from jaxinpaint import errors

USAGE, FAILURE, INTERRUPTED, TERMINATED = 2, 1, 130, 143  # exit codes


def _raise_terminated(signum, frame):
  del signum, frame
  raise errors.Terminated()


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
  """TERMINATED for a Terminated (or what it caused) or training's stop by
  SIGTERM (`errors.StoppedBySignal`), else INTERRUPTED."""
  terminated = (isinstance(error, errors.Terminated)
                or isinstance(error.__cause__, errors.Terminated)
                or getattr(error, 'signum', None) == signal.SIGTERM)
  return TERMINATED if terminated else INTERRUPTED


USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError)


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
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.WARNING)
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
    absl_logging.set_verbosity(verbosity)


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
          + '; the keys are those of jaxinpaint/training/config_schema.py')
  except (flags.Error, ValueError, TypeError) as e:
    fail(str(e).splitlines()[0])


class _StderrHandler(logging.StreamHandler):
  """Writes to `sys.stderr` as it is at each record, not as it was when the
  handler was made: a CLI run in-process (a test capturing stderr) writes
  where `print(..., file=sys.stderr)` would."""

  def __init__(self):
    logging.Handler.__init__(self)  # no stream of its own: `stream` below

  @property
  def stream(self):
    return sys.stderr


def _show_library_notes():
  """The library's notes (WARNINGs and above of the `jaxinpaint` loggers,
  e.g. `loading.load_model`'s on an unfinished work dir) as plain lines on
  stderr, like the CLI's own notes and errors.

  Shown whatever the root logger's level (absl's --verbosity), as a print
  would be, and not propagated to the root logger, where absl's handler
  (`app.run`) would print them a second time, prefixed. Idempotent.
  """
  logger = logging.getLogger('jaxinpaint')
  if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter('%(message)s'))
    logger.addHandler(handler)
  logger.setLevel(logging.WARNING)
  logger.propagate = False


def prepare_host():
  """What every CLI does first: the library's notes as lines on stderr
  (`_show_library_notes`), and on a CPU, reuse freed memory instead of
  page-faulting each XLA execution's temporaries afresh (~10% of a
  completion step; `host_memory`)."""
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import host_memory
  _show_library_notes()
  host_memory.reuse_freed_memory()
