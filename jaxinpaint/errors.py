"""The library's errors: what went wrong, in one line, naming the argument,
config key or file (never a command-line flag: the CLIs map these to their
flags and exit codes, `cli.run_checked`).

  InputError     a bad argument, input file or config value, found before any
                 work (a CLI exits with 2)
  ArgumentError  an InputError about one named argument (`.argument`), so a
                 CLI can name its own flag instead (`for_flag`,
                 `naming_flags`)
  RunError       the computation or a write failed during the work (exit 1)
  Interrupted    Ctrl-C during a run, saying what was kept (exit 130)
  Terminated     SIGTERM, raised where a CLI turns it into an exception
                 (`cli.sigterm_raises`; exit 143)
"""
import contextlib


class InputError(Exception):
  """A bad argument, input or output path: one line, exit code 2 in a CLI."""


class ArgumentError(InputError):
  """A bad value of the argument `argument` (its Python name).

  `str(error)` reads 'argument: detail'; `for_flag('--flag')` the same with
  the CLI's flag, so one check serves Python callers and the command line.
  """

  def __init__(self, argument: str, detail: str):
    self.argument, self.detail = argument, detail
    super().__init__(f'{argument}: {detail}')

  def for_flag(self, flag: str) -> str:
    return f'{flag}: {self.detail}'


@contextlib.contextmanager
def naming_flags(**flags):
  """Within it, an ArgumentError about one of `flags` (argument name ->
  a CLI's flag) becomes an InputError naming the flag instead:

    with errors.naming_flags(model='--checkpoint'):
      model_dir, config = loading.find_model(args.checkpoint)
  """
  try:
    yield
  except ArgumentError as e:
    if e.argument not in flags:
      raise
    raise InputError(e.for_flag(flags[e.argument])) from e


class RunError(Exception):
  """The computation or a write failed: one line, exit code 1 in a CLI."""


class Interrupted(KeyboardInterrupt):
  """Ctrl-C during a run, saying what was kept: exit code 130 in a CLI."""


class Terminated(KeyboardInterrupt):
  """SIGTERM, as an exception (`cli.sigterm_raises`): a run stops as on
  Ctrl-C, and the CLI exits with 143."""
