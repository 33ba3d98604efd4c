"""Exports a training work dir as a compact model for completion: G, D and
Dp (no optimizer state), G's BatchNorm statistics recalibrated for the final
weights (`model.recalibrated_stats`: a run stopped by a signal saved only
the running averages), the arrays in a storage dtype with their SHA-256
(checksums.json). The result is finalized by definition and loads with
`loading.load_model`, like the work dir itself. The command line:
`jaxinpaint-export` (`cli/export.py`).
"""
import jax.numpy as jnp

from jaxinpaint import errors
from jaxinpaint.models import checkpoint, model, networks


def export(workdir, out, dtype='bfloat16', recalibration_batches=None):
  """Exports the newest checkpoint of `workdir` to the new (or empty)
  directory `out`; returns its step. Raises errors.InputError (one line,
  naming `out`, `workdir` or `recalibration_batches`) before any work for a
  bad argument."""
  # Before the recalibration, which compiles and runs G for a while.
  if recalibration_batches is not None and recalibration_batches < 1:
    raise errors.ArgumentError('recalibration_batches',
                               f'must be >= 1, got {recalibration_batches}')
  checkpoint.check_new_model_dir(out, f'out {out}')
  config = checkpoint.load_config(workdir)
  if checkpoint.is_exported_model(workdir):
    raise errors.InputError(
        f'{workdir}: already an exported model, not a training work dir: '
        'nothing to export; copy the folder to use it elsewhere')
  if checkpoint.latest_step(workdir) == 0:
    raise errors.InputError(
        f'{workdir}: its checkpoint is from step 0, a model that never '
        'trained (its completions would be noise); train it first')
  raw, step = checkpoint.restore_raw(workdir)
  if 'g_stats' not in raw:  # no training state: an export without checksums
    raise errors.InputError(
        f'{workdir}: an exported model whose export did not finish (no '
        f'{checkpoint.CHECKSUM_FILE}), not a training work dir: nothing to '
        'export; export its training work dir again')
  nets = networks.build_models(config.model)
  g_stats = model.recalibrated_stats(
      nets['generator'], raw['g_params'], raw['g_stats'], config,
      recalibration_batches)
  variables = checkpoint.inference_variables(dict(raw, g_stats_eval=g_stats))
  checkpoint.export_inference(out, config, variables, step, jnp.dtype(dtype))
  return step
