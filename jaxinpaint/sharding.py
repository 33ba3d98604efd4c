"""Devices and meshes, for training and completion alike.

Training is data-parallel over every device of every process: a one-axis
mesh (`DATA_AXIS`) with the batch split on it and the state replicated.
Completion runs on this process's local devices (`completion_devices`):
each batch's images are split over a one-axis mesh of them (`IMAGE_AXIS`)
and the networks replicated; one device needs no mesh. Both are SPMD over
the same per-example maths.
"""
from typing import Sequence, Union

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from jaxinpaint import errors

DATA_AXIS = 'data'
IMAGE_AXIS = 'images'

Devices = Union[None, int, Sequence[jax.Device]]


def training_mesh() -> Mesh:
  """Every device of every process on `DATA_AXIS`."""
  return Mesh(np.array(jax.devices()), (DATA_AXIS,))


def check_batch_size(batch_size: int):
  """A training batch splits evenly over the devices, or an InputError
  naming the config key."""
  n = jax.device_count()
  if batch_size % n:
    raise errors.InputError(
        f'config.train.batch_size={batch_size} is not divisible by the '
        f'{n} devices; use a multiple of {n}')


def completion_devices(devices: Devices = None) -> list:
  """The local devices a completion runs on.

  None: all local devices; an int n: the first n local devices; a sequence:
  those devices. Raises errors.ArgumentError naming `devices` for a count
  out of range or an empty sequence.
  """
  local = jax.local_devices()
  if devices is None:
    return list(local)
  if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
    if not 1 <= devices <= len(local):
      raise errors.ArgumentError(
          'devices', f'got {devices}, but this process has {len(local)} '
          f'local {local[0].platform} device{"s" * (len(local) != 1)}; '
          f'expected a count from 1 to {len(local)}')
    return list(local[:devices])
  devices = list(devices)
  if not devices or not all(isinstance(d, jax.Device) for d in devices):
    raise errors.ArgumentError(
        'devices', f'expected None, a count or a non-empty list of jax '
        f'devices, got {devices!r}')
  return devices


def batch_placement(devices: Sequence[jax.Device]):
  """(place_batch, place_replicated): put a batch's arrays (split on their
  leading axis over `devices`) and the networks' variables (a copy on each)
  where the jitted search will run.

  One device needs no mesh: the arrays are put on it and jit follows them.
  """
  if len(devices) == 1:
    put = lambda tree: jax.device_put(tree, devices[0])
    return put, put
  mesh = Mesh(np.array(devices), (IMAGE_AXIS,))
  split, replicated = NamedSharding(mesh, P(IMAGE_AXIS)), NamedSharding(
      mesh, P())
  return (lambda tree: jax.device_put(tree, split),
          lambda tree: jax.device_put(tree, replicated))


def round_batch_size(batch_size: int, n_images: int, n_devices: int) -> int:
  """min(batch_size, n_images) rounded up to a multiple of n_devices, so every
  device gets the same number of images (padding rows are dropped later)."""
  batch = min(batch_size, n_images)
  return -(-batch // n_devices) * n_devices
