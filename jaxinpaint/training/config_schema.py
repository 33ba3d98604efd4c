"""The configuration schema: every key a run can set, with its default.

Files in `configs/` start from `base_config()` and change what differs, so a
key read by the library always exists (a typo on the command line is an
error, not a silently ignored value).
"""
import math

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  # Exactly one source: a folder of images, an .npz of uint8 images, or a
  # tensorflow-datasets name read with tfds.data_source (no TensorFlow).
  c.data = ml_collections.ConfigDict()
  c.data.folder = ''
  c.data.npz = ''
  c.data.tfds_name = ''
  c.data.tfds_data_dir = ''  # '' = tfds default (~/tensorflow_datasets)
  c.data.split = 'train'
  c.data.skip_corrupt = False  # True: skip unreadable files and count them
  c.data.num_threads = 8  # decoding threads of the background prefetch
  c.data.prefetch_batches = 8
  # True: decode the whole set once into one uint8 array on the accelerator
  # (replicated) and draw each batch inside the jitted step: no host
  # pipeline, no per-step host-to-device copy.
  c.data.on_device = False
  c.data.cache = ''  # .npy of the decoded set (on_device): reused next run

  c.model = ml_collections.ConfigDict()
  c.model.arch = 'wgan'  # 'wgan' (residual G, D, Dp) or 'dcgan' (Yeh et al.)
  c.model.resolution = 64
  c.model.width = 64  # base width d
  c.model.z_dim = 128
  c.model.dtype = 'float32'  # activations; 'bfloat16' on GPUs

  c.train = ml_collections.ConfigDict()
  c.train.loss = 'wgan_gp'  # 'wgan_gp' or 'gan' (non-saturating, DCGAN)
  c.train.batch_size = 64
  c.train.steps = 100_000  # generator steps
  c.train.n_critic = 5
  c.train.gp_weight = 10.0
  c.train.learning_rate = 1e-4
  c.train.b1 = 0.0
  c.train.b2 = 0.9
  c.train.log_every = 50
  c.train.checkpoint_every = 1000
  c.train.sample_every = 1000
  c.train.keep_checkpoints = 2
  c.train.bn_recalibration_batches = 200  # after training, for completion
  c.train.multiprocess = False  # call jax.distributed.initialize()
  # Seconds from process start (data loading and compilation included);
  # at the deadline training stops between steps and finishes normally:
  # checkpoint, BatchNorm recalibration, export. 0 = no limit.
  c.train.time_limit = 0.0
  c.train.export_to = ''  # at the end, export the inference model here
  c.train.export_dtype = 'bfloat16'
  # Warm start: an exported model or a work dir of the same networks; its
  # G, D, Dp and G's BatchNorm statistics, fresh optimizers, its step count.
  c.train.init_from = ''
  # The n_critic loop: 'scan' compiles the critic step once (accelerators:
  # much shorter compilation), 'unroll' (CPU: XLA:CPU runs convolutions in
  # a loop body on a slow path); 'auto' picks by platform.
  c.train.critic_loop = 'auto'
  # Resuming a work dir with other values of keys that change the run
  # (workdir_files.RUN_KEYS_FREE lists those that do not) is refused unless
  # True.
  c.train.allow_config_change = False
  # Resuming a work dir whose data changed since the run was saved (other
  # image files or another count: the work dir's data_listing.json) is
  # refused unless True.
  c.train.allow_data_change = False
  return c


# Allowed values of the string keys with a fixed set of choices.
_CHOICES = {
    'model.arch': ('wgan', 'dcgan'),
    'model.dtype': ('float32', 'bfloat16', 'float16'),
    'train.loss': ('wgan_gp', 'gan'),
    'train.export_dtype': ('bfloat16', 'float16', 'float32'),
    'train.critic_loop': ('auto', 'scan', 'unroll'),
}
# Integer keys that count something (a 0 divides by zero or does nothing).
_AT_LEAST_ONE = (
    'data.num_threads', 'data.prefetch_batches', 'model.width',
    'model.z_dim', 'train.batch_size', 'train.steps', 'train.n_critic',
    'train.log_every', 'train.checkpoint_every', 'train.sample_every',
    'train.keep_checkpoints', 'train.bn_recalibration_batches')
# Seeds reach jax.random.key, which takes 32-bit values without overflow.
_SEED_LIMIT = 2**32


def flatten(node, prefix=''):
  """{'train.steps': value, ...} of a nested ConfigDict or dict (a config
  read back from JSON)."""
  flat = {}
  for key, value in node.items():
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _type_problem(value, default):
  """What is wrong with the type of `value`, given the schema's default."""
  # bool is an int in Python: check it first, both ways.
  if isinstance(default, bool) or isinstance(value, bool):
    ok = isinstance(value, bool) and isinstance(default, bool)
  elif isinstance(default, float):
    ok = isinstance(value, (int, float)) and math.isfinite(value)
  else:
    ok = isinstance(value, type(default))
  kind = {bool: 'a boolean', int: 'an integer', float: 'a finite number',
          str: 'a string'}[type(default)]
  return None if ok else f'must be {kind}'


def _range_problem(key, value):
  """What is wrong with a well-typed `value` of `key`, or None."""
  if key in _CHOICES and value not in _CHOICES[key]:
    return 'expected one of ' + ', '.join(repr(c) for c in _CHOICES[key])
  if key in _AT_LEAST_ONE and value < 1:
    return 'must be >= 1'
  if key == 'seed' and not 0 <= value < _SEED_LIMIT:
    return 'must be >= 0 and < 2**32'
  if key == 'model.resolution' and (value < 8 or value & (value - 1)):
    return 'must be a power of two >= 8 (8, 16, 32, 64, ...)'
  if key == 'train.learning_rate' and value <= 0:
    return 'must be > 0'
  if key in ('train.gp_weight', 'train.time_limit') and value < 0:
    return 'must be >= 0'
  if key in ('train.b1', 'train.b2') and not 0 <= value < 1:
    return 'must be >= 0 and < 1'
  return None


def validate(config) -> None:
  """Checks every key of a run's config against the schema of base_config.

  Raises ValueError with one line naming the first bad key, e.g.
  `config.train.log_every=0: must be >= 1` (train.py's flag is the same
  with `--` in front): a bad value
  fails before a run writes anything, not steps later (a ZeroDivisionError,
  an empty critic loop, a run that is 'done' at step 0).
  """
  schema, given = flatten(base_config()), flatten(config)
  unknown = sorted(given.keys() - schema.keys())
  if unknown:
    raise ValueError(f'config.{unknown[0]}: not a key of '
                     'jaxinpaint/training/config_schema.py')
  for key, default in schema.items():
    if key not in given:
      raise ValueError(f'config.{key}: missing (every key of '
                       'jaxinpaint/training/config_schema.py must be set)')
    value = given[key]
    problem = _type_problem(value, default) or _range_problem(key, value)
    if problem:
      raise ValueError(f'config.{key}={value!r}: {problem}')
