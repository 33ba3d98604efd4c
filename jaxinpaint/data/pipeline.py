"""The training batches: a deterministic stream of the source's images.

Batches are a pure function of (seed, batch index): global batch k holds the
elements k*B, ..., k*B + B - 1 of an infinite stream in which epoch e is the
permutation `default_rng([seed, e]).permutation(N)` of the N images. So a run
resumed at batch k sees exactly the batches an uninterrupted run would have,
and P processes that each take their 1/P slice of every global batch see
together exactly what one process would. The only state to checkpoint is the
index of the next batch (`BatchIterator.next_batch`).

Decoding runs in a thread pool with a bounded number of batches in flight:
libjpeg/zlib and PIL's resize release the GIL, and threads need neither
pickling nor shared memory. What holds the GIL is Python code around each
image, so it is kept short: chunks of a batch per task, and JPEGs decoded at
reduced scale (decoding.py).

With the whole set on the accelerator (sources.load_all), `device_batches`
draws the same kind of stream inside the jitted step.
"""
import collections
import concurrent.futures
import logging
import threading
from typing import Any

import numpy as np

from jaxinpaint import errors
from jaxinpaint.data import decoding
from jaxinpaint.data import sources

# Seeds are mixed into numpy's SeedSequence, which takes non-negative ints.
_SEED_MODULUS = 1 << 64


# ----------------------------------------------------------------------------
# Deterministic batches.


def stream_indices(num_images: int, seed: int, positions: np.ndarray,
                   permutation=None) -> np.ndarray:
  """Source indices of elements `positions` of the infinite stream.

  Element g is image perm_e[g % N] with epoch e = g // N and
  perm_e = default_rng([seed, e]).permutation(N): every epoch shows each
  image exactly once, and a batch that straddles two epochs takes the end of
  one and the start of the next.

  Args:
    num_images: N.
    seed: the data seed.
    positions: int array of stream positions (global batch k, row r is
      position k * B + r).
    permutation: optional cached `(epoch) -> permutation` function.

  Returns:
    int64 array shaped like `positions`.
  """
  permutation = permutation or (
      lambda e: epoch_permutation(num_images, seed, e))
  positions = np.asarray(positions, np.int64)
  epochs = positions // num_images
  out = np.empty(positions.shape, np.int64)
  for epoch in np.unique(epochs):
    sel = epochs == epoch
    out[sel] = permutation(int(epoch))[positions[sel] % num_images]
  return out


def epoch_permutation(num_images: int, seed: int, epoch: int) -> np.ndarray:
  """The order of the N images in epoch `epoch` of the stream."""
  rng = np.random.default_rng([seed % _SEED_MODULUS, epoch])
  return rng.permutation(num_images)


class BatchIterator:
  """Infinite iterator over float32 batches (b, R, R, 3) in [-1, 1].

  Yields rows [process_index * b, (process_index + 1) * b) of global batches
  start_batch, start_batch + 1, ..., with b = global_batch_size //
  process_count. Decoding runs ahead in background threads; call `close()`
  (or use it as a context manager) to stop them early.

  Attributes:
    next_batch: index of the global batch the next `next()` returns (the value
      to save in a checkpoint and pass back as `start_batch`).
    num_skipped: number of distinct unreadable files skipped so far (only with
      skip_corrupt=True; otherwise such a file raises errors.CorruptImageError).
    description: `sources.describe_source` of the source.
  """

  def __init__(self, source, resolution: int, global_batch_size: int,
               seed: int, start_batch: int, process_index: int,
               process_count: int, num_threads: int, prefetch_batches: int,
               skip_corrupt: bool):
    self._source = source
    self._num_images = len(source)
    self._resolution = resolution
    self._global_batch_size = global_batch_size
    self._local_batch_size = global_batch_size // process_count
    self._row0 = process_index * self._local_batch_size
    self._seed = seed
    self._skip_corrupt = skip_corrupt
    self._corrupt: set[int] = set()
    self._lock = threading.Lock()
    self._perm_cache: collections.OrderedDict[int, np.ndarray] = (
        collections.OrderedDict())
    self.description = source.describe()
    self.next_batch = start_batch
    self._to_submit = start_batch
    self._in_flight: collections.deque = collections.deque()
    self._pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, num_threads), thread_name_prefix='jaxinpaint-data')
    self._prefetch = max(1, prefetch_batches)
    self._closed = False
    for _ in range(self._prefetch):
      self._submit()

  @property
  def num_skipped(self) -> int:
    with self._lock:
      return len(self._corrupt)

  def _local_indices(self, batch: int) -> np.ndarray:
    """Source indices of this process's rows of global batch `batch`."""
    positions = batch * self._global_batch_size + self._row0 + np.arange(
        self._local_batch_size, dtype=np.int64)
    return stream_indices(self._num_images, self._seed, positions,
                          self._epoch_permutation)

  def _epoch_permutation(self, epoch: int) -> np.ndarray:
    # Only the submitting (main) thread calls this. Two epochs cover a batch
    # that straddles the boundary.
    perm = self._perm_cache.get(epoch)
    if perm is None:
      perm = epoch_permutation(self._num_images, self._seed, epoch)
      self._perm_cache[epoch] = perm
      while len(self._perm_cache) > 2:
        self._perm_cache.popitem(last=False)
    return perm

  def _submit(self):
    indices = self._local_indices(self._to_submit)
    r = self._resolution
    out = np.empty((len(indices), r, r, 3), np.float32)
    futures = [
        self._pool.submit(self._fill, out, indices, lo,
                          min(lo + decoding.IMAGES_PER_TASK, len(indices)))
        for lo in range(0, len(indices), decoding.IMAGES_PER_TASK)
    ]
    self._in_flight.append((self._to_submit, out, futures))
    self._to_submit += 1

  def _fill(self, out: np.ndarray, indices: np.ndarray, lo: int, hi: int):
    """Decodes images indices[lo:hi] into out[lo:hi] (worker thread)."""
    r = self._resolution
    chunk = np.empty((hi - lo, r, r, 3), np.uint8)
    for i in range(lo, hi):
      chunk[i - lo] = self._read(int(indices[i]))
    decoding.to_float(chunk, out=out[lo:hi])

  def _read(self, index: int) -> np.ndarray:
    if not self._skip_corrupt:
      return self._source.read(index, self._resolution)
    # The replacement of an unreadable image is the next readable one in
    # source order: it depends only on the files, never on thread timing.
    for offset in range(self._num_images):
      j = (index + offset) % self._num_images
      with self._lock:
        known_bad = j in self._corrupt
      if known_bad:
        continue
      try:
        return self._source.read(j, self._resolution)
      except errors.CorruptImageError as e:
        with self._lock:
          new = j not in self._corrupt
          self._corrupt.add(j)
        if new:
          logging.warning('skipping unreadable image: %s', e)
    raise ValueError(f'{self.description}: no image could be read')

  def __iter__(self) -> 'BatchIterator':
    return self

  def __next__(self) -> np.ndarray:
    if self._closed:
      raise StopIteration
    batch, out, futures = self._in_flight.popleft()
    # Top up first so the workers stay busy while we wait.
    self._submit()
    try:
      for f in futures:
        f.result()
    except BaseException:
      self.close()
      raise
    self.next_batch = batch + 1
    return out

  def close(self):
    """Cancels pending work and joins the threads; idempotent."""
    if self._closed:
      return
    self._closed = True
    self._in_flight.clear()
    self._pool.shutdown(wait=True, cancel_futures=True)

  def __enter__(self) -> 'BatchIterator':
    return self

  def __exit__(self, *exc):
    self.close()

  def __del__(self):
    # Without wait: __del__ may run in a worker thread's last reference.
    if not getattr(self, '_closed', True):
      self._closed = True
      self._pool.shutdown(wait=False, cancel_futures=True)


def make_batch_iterator(data_config: Any, resolution: int,
                        global_batch_size: int, seed: int,
                        start_batch: int = 0, process_index: int = 0,
                        process_count: int = 1,
                        source=None) -> BatchIterator:
  """Background-prefetched batches of the source named by `data_config`.

  Args:
    data_config: `config.data` (folder / npz / tfds_name, split,
      tfds_data_dir, skip_corrupt, num_threads, prefetch_batches).
    resolution: side R of the square output images.
    global_batch_size: B, summed over all processes.
    seed: fixes the permutation of every epoch.
    start_batch: index of the first global batch to yield (resume point).
    process_index: this process's index in [0, process_count).
    process_count: number of processes that share each global batch.
    source: `sources.open_source(data_config)` if the caller has it already
      (an npz source holds every image: opening it again would load them
      again).

  Returns:
    A `BatchIterator` yielding float32 arrays (B // P, R, R, 3) in [-1, 1]:
    this process's rows of global batches start_batch, start_batch + 1, ...

  Raises:
    ValueError: bad arguments, no/several sources, missing or empty folder.
  """
  if resolution <= 0:
    raise ValueError(f'resolution must be positive, got {resolution}')
  if global_batch_size <= 0:
    raise ValueError(
        f'global_batch_size must be positive, got {global_batch_size}')
  if process_count <= 0 or not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} is not in '
                     f'[0, process_count={process_count})')
  if global_batch_size % process_count:
    raise ValueError(f'global batch size {global_batch_size} is not '
                     f'divisible by the process count {process_count}')
  if start_batch < 0:
    raise ValueError(f'start_batch must be >= 0, got {start_batch}')
  if source is None:
    source = sources.open_source(data_config)
  return BatchIterator(
      source, resolution, global_batch_size, seed, start_batch, process_index,
      process_count,
      num_threads=getattr(data_config, 'num_threads', 8),
      prefetch_batches=getattr(data_config, 'prefetch_batches', 8),
      skip_corrupt=getattr(data_config, 'skip_corrupt', False))


# ----------------------------------------------------------------------------
# The whole set on the accelerator.


def device_batches(images, seed: int, first_batch, num_batches: int,
                   batch_size: int):
  """Global batches first_batch, ..., first_batch + num_batches - 1, drawn
  inside a jitted function from uint8 `images` (N, R, R, 3) already on the
  device: float32 (num_batches, batch_size, R, R, 3) in [-1, 1].

  The same stream as `stream_indices` describes (each epoch a permutation of
  the N images; a batch that straddles two epochs takes the end of one and
  the start of the next), with the permutation drawn by JAX from
  fold_in(key(seed), epoch): a pure function of (seed, first_batch), so a
  resumed run draws the same batches. Needs num_batches * batch_size <= N
  (the call then spans at most two epochs).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  n = images.shape[0]
  if num_batches * batch_size > n:
    raise ValueError(f'{num_batches} batches of {batch_size} need at least '
                     f'{num_batches * batch_size} images, the set has {n}')
  positions = ((first_batch + jnp.arange(num_batches))[:, None] * batch_size
               + jnp.arange(batch_size)[None, :])
  epochs = positions // n
  key = jax.random.key(seed)
  first = jax.random.permutation(jax.random.fold_in(key, epochs.min()), n)
  second = jax.random.permutation(jax.random.fold_in(key, epochs.min() + 1),
                                  n)
  indices = jnp.where(epochs == epochs.min(), first[positions % n],
                      second[positions % n])
  return images[indices].astype(jnp.float32) / 127.5 - 1.0
