"""Checkpoints: orbax over one state pytree, plus the run's config as JSON.

Layout of a model directory (a training work dir or an exported model):
  DIR/config.json           the ConfigDict that built the networks
  DIR/checkpoints/<step>/   orbax StandardSave of a pytree whose fields include
                            g_params, g_stats_eval, d_params (and, in a
                            training work dir, everything needed to resume)
"""
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'


def manager(workdir, keep: int = 2, create: bool = True):
  """An orbax CheckpointManager under DIR/checkpoints."""
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=create))


def save_config(workdir, config):
  Path(workdir, CONFIG_FILE).write_text(config.to_json(indent=2))


def load_config(workdir) -> ml_collections.ConfigDict:
  path = Path(workdir, CONFIG_FILE)
  if not path.is_file():
    raise FileNotFoundError(
        f'{workdir}: not a jaxinpaint model directory (no {CONFIG_FILE}); '
        'expected a training --workdir or an exported model')
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def latest_step(workdir):
  """The newest complete checkpoint's step, or None."""
  if not Path(workdir, CHECKPOINT_DIR).is_dir():
    return None
  return manager(workdir, create=False).latest_step()


def restore_raw(workdir, step=None):
  """The saved pytree as nested dicts of arrays on this host's first device.

  Needs no target structure, and loads checkpoints written by any number of
  devices or processes (their shardings are replaced by one device).
  """
  mgr = manager(workdir, create=False)
  step = mgr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'{workdir}: no checkpoint under '
                            f'{CHECKPOINT_DIR}/ (has training saved one?)')
  fallback = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return mgr.restore(step, args=ocp.args.StandardRestore(
      fallback_sharding=fallback)), int(step)


def load_inference_variables(model_dir):
  """(config, variables) for completion from a model directory.

  variables = {'generator': {'params', 'batch_stats'}, 'critic': {'params',
  ...}, 'patch_critic': ...}, float32, with G's batch statistics taken from
  the recalibrated `g_stats_eval` (see training.recalibrate_batch_stats).
  """
  config = load_config(model_dir)
  raw, step = restore_raw(model_dir)
  to_f32 = lambda t: jax.tree.map(
      lambda x: jnp.asarray(np.asarray(x, np.float32)), t)
  return config, to_f32(inference_variables(raw)), step


def inference_variables(tree):
  """{'generator': {'params', 'batch_stats'}, 'critic': {'params'}, ...} of
  a saved pytree or TrainState (anything with g_params, g_stats_eval,
  d_params, d_stats), G's statistics being the recalibrated ones."""
  get = (tree.get if isinstance(tree, dict)
         else lambda k, default=None: getattr(tree, k, default))
  variables = {'generator': {'params': get('g_params'),
                             'batch_stats': get('g_stats_eval')}}
  d_stats = get('d_stats', None) or {}
  for name, params in get('d_params').items():
    variables[name] = {'params': params}
    if d_stats.get(name):
      variables[name]['batch_stats'] = d_stats[name]
  return variables


def export_inference(model_dir, config, variables, step, dtype=jnp.bfloat16):
  """Writes the networks alone (no optimizer state) in `dtype`.

  The result loads with `load_inference_variables`, like a training dir.
  """
  if Path(model_dir).exists() and any(Path(model_dir).iterdir()):
    raise FileExistsError(f'{model_dir}: exists and is not empty')
  cast = lambda t: jax.tree.map(lambda x: jnp.asarray(x, dtype), t)
  tree = {'step': jnp.asarray(step),
          'g_params': cast(variables['generator']['params']),
          'g_stats_eval': cast(variables['generator']['batch_stats']),
          'd_params': {k: cast(v['params']) for k, v in variables.items()
                       if k != 'generator'},
          'd_stats': {k: cast(v['batch_stats']) for k, v in variables.items()
                      if k != 'generator' and 'batch_stats' in v}}
  Path(model_dir).mkdir(parents=True, exist_ok=True)
  save_config(model_dir, config)
  mgr = manager(model_dir, keep=1)
  mgr.save(step, args=ocp.args.StandardSave(tree))
  mgr.wait_until_finished()
