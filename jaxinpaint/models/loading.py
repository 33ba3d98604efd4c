"""Finding and loading a model for completion.

`model` below is a path (an exported model or a training work dir), the
name of a model shipped in the package (`shipped_model_names()`), or None
for the default one (`DEFAULT_MODEL`).

  find_model(model)  -> (model directory, its config), loading no array:
                        for checks before any work
  load_model(model)  -> the `model.Model` handle completion takes

`load_model` is the one loader for every kind of model directory:
  an exported model      its checksums are checked, loaded as saved;
  a finished work dir    the checkpoint written at the end of training,
                         loaded as saved (G's statistics were recalibrated);
  an unfinished work dir a periodic or a signal's checkpoint (not finalized,
                         `checkpoint.is_finalized`): G's BatchNorm statistics
                         are recalibrated as the end of training does
                         (`model.recalibrated_stats`), with a note: a
                         WARNING on this module's logger (the CLIs print
                         it as one line on stderr: `cli.common`).

Nothing here starts JAX until a model is found or loaded (`--help` and
argument errors stay fast).
"""
import logging
from pathlib import Path

from jaxinpaint import errors

_log = logging.getLogger(__name__)

ASSETS = Path(__file__).parents[1] / 'assets'  # the package's shipped files
DEFAULT_MODEL = ASSETS / 'celeba64'


def shipped_model_names() -> list:
  """The models in the package (folders of assets/ with a config)."""
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint.models import checkpoint
  if not ASSETS.is_dir():
    return []
  return sorted(p.name for p in ASSETS.iterdir()
                if (p / checkpoint.CONFIG_FILE).is_file())


def find_model(model=None):
  """(model directory, its config) of `model` (module docs). Cheap: no
  arrays are loaded.

  Raises errors.ArgumentError('model', ...) for a path that is neither a model
  directory nor a shipped model's name, a directory that is not a model, and
  a model that never trained (step 0).
  """
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint.models import checkpoint
  if model is None:
    model_dir = DEFAULT_MODEL
    if not model_dir.is_dir():
      raise errors.ArgumentError(
          'model', f'no shipped model is installed (nothing at {model_dir}); '
          'pass a model directory (a training work dir or an exported model)')
  else:
    model = str(model)
    model_dir = Path(model)
    if not model_dir.is_dir() and model_dir.name == model:
      model_dir = ASSETS / model  # a shipped model's name
    if not model_dir.is_dir():
      raise errors.ArgumentError(
          'model', f'{model}: no such directory (nor a shipped model: '
          f'{", ".join(shipped_model_names())})')
  try:
    config = checkpoint.load_config(model_dir)
  except (FileNotFoundError, ValueError) as e:  # ValueError: bad JSON
    raise errors.ArgumentError('model', str(e)) from e
  step = checkpoint.latest_step(model_dir)
  if step is None:
    writing = checkpoint.steps_being_written(model_dir)
    if writing:
      raise errors.ArgumentError(
          'model', f'{model_dir}: its first checkpoint (step {writing[-1]}) '
          'is being written (is training running there?); retry when it is '
          'saved')
    raise errors.ArgumentError(
        'model', f'{model_dir}: not a jaxinpaint model directory (no '
        f'checkpoint under {checkpoint.CHECKPOINT_DIR}/)')
  if step == 0:
    raise errors.ArgumentError(
        'model', f'{model_dir}: its checkpoint is from step 0, a model that '
        'never trained (its completions would be noise); train it, or pass '
        'another model')
  return model_dir, config


def load_model(model=None):
  """The `model.Model` handle of `model` (module docs): nets, float32
  inference variables, arch, z_dim, resolution, step and config.

  Raises ArgumentError as `find_model`, errors.ChecksumError for a
  damaged exported model, errors.DamagedCheckpointError for a damaged
  checkpoint.
  """
  # pylint: disable=g-import-not-at-top
  from jaxinpaint.models import checkpoint, networks
  from jaxinpaint.models import model as model_lib  # `model`: the argument
  # pylint: enable=g-import-not-at-top
  model_dir, config = find_model(model)
  raw, step = checkpoint.restore_raw(model_dir)
  checkpoint.check_checksums(model_dir, raw)
  if 'g_stats' in raw and not checkpoint.is_finalized(model_dir, step):
    # A periodic or a signal's checkpoint: G's statistics for inference are
    # the running averages, which lag behind a GAN's weights.
    batches = config.train.bn_recalibration_batches
    _log.warning(
        "note: %s: the checkpoint of step %s was saved before the end of "
        "training, so G's BatchNorm statistics are running averages; "
        'recalibrating them over %s batches of z (`python -m '
        'jaxinpaint.cli.export --workdir %s --out DIR` does it once)',
        model_dir, step, batches, model_dir)
    generator = networks.build_models(config.model)['generator']
    raw = dict(raw, g_stats_eval=model_lib.recalibrated_stats(
        generator, raw['g_params'], raw['g_stats'], config))
  variables = checkpoint.to_float32(checkpoint.inference_variables(raw))
  return model_lib.Model.from_config(config.model, variables, step=step,
                                     config=config)
