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

and their kinds, each raised by one part of the library:

  InputError:  CorruptImageError, its kinds ImageTooLargeError and
               ImageRangeError (data), ChecksumError, DamagedCheckpointError
               and CheckpointBeingWrittenError (models), TimeLimitTooShort
               (training), PageError (the demo's visitor input)
  RunError:    NonFiniteLossError (training), WriteError (a training work dir)
  Interrupted: StoppedBySignal (training saved a checkpoint and stopped)

An InputError is a ValueError and a RunError a RuntimeError, so code that
catches the built-in kinds keeps working.
"""
import contextlib
import signal


class InputError(ValueError):
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


class RunError(RuntimeError):
  """The computation or a write failed: one line, exit code 1 in a CLI."""


class Interrupted(KeyboardInterrupt):
  """Ctrl-C during a run, saying what was kept: exit code 130 in a CLI."""


class Terminated(KeyboardInterrupt):
  """SIGTERM, as an exception (`cli.sigterm_raises`): a run stops as on
  Ctrl-C, and the CLI exits with 143."""


# ----------------------------------------------------------------------------
# The kinds.


class CorruptImageError(InputError):
  """An image file that cannot be read or decoded; the message names it."""


class ImageTooLargeError(CorruptImageError):
  """An image file over Pillow's decompression-bomb limit
  (PIL.Image.MAX_IMAGE_PIXELS), refused from its header.

  `str(error)` reads 'what detail' (e.g. 'image x.png is 9000x9000 (...),
  over ...'); `size` is (width, height), or None where Pillow refused the
  header itself (over twice the limit) and only said the pixel count.
  """

  def __init__(self, what: str, detail: str, size=None):
    self.what, self.detail, self.size = what, detail, size
    super().__init__(f'{what} {detail}')


class ImageRangeError(CorruptImageError):
  """A 16-bit or float image file whose values lie outside its type's range
  ([0, 65535], or [0, 1] for float). `str(error)` reads 'what detail'."""

  def __init__(self, what: str, detail: str):
    self.what, self.detail = what, detail
    super().__init__(f'{what} {detail}')


class ChecksumError(InputError):
  """An array of an exported model differs from the checksum it was saved
  with: the files were damaged after export."""


class DamagedCheckpointError(InputError):
  """A checkpoint whose files cannot be read: an array file missing or
  truncated."""


class CheckpointBeingWrittenError(DamagedCheckpointError):
  """A checkpoint that changed while it was read: training is writing the
  work dir."""


class TimeLimitTooShort(InputError):
  """config.train.time_limit passed before the first step was trained."""


class PageError(InputError):
  """Bad input on the demo's page: one line for the visitor."""


class NonFiniteLossError(RunError):
  """A training loss became NaN or infinite; the message names the step."""


class WriteError(RunError):
  """A file of the work dir could not be written (e.g. the disk is full)."""


class StoppedBySignal(Interrupted):
  """SIGTERM/SIGINT (`signum`) arrived during training; a checkpoint was
  saved (the message says which)."""

  def __init__(self, message, signum=signal.SIGINT):
    super().__init__(message)
    self.signum = signum


class Cancelled(Exception):
  """The demo's visitor left: the search stops at its next preview."""
