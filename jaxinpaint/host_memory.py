"""Host memory: let a CPU run reuse freed memory instead of re-faulting it,
and how much memory a device has free.

XLA:CPU allocates each execution's temporaries as one block (~60 MB for
one completion step of 8 images at width 16, more for larger models and
batches). glibc serves blocks above its mmap threshold (at most 32 MiB by
its own rule) with a fresh `mmap` and unmaps them on free, so every step of
a search run from Python (`completion.Options.loop`, the CPU default) pays
a page fault on each 4 KiB page it touches: ~10% of a completion step on
CPU (bench/completion_torch.py measures it). `reuse_freed_memory` raises
glibc's mmap and trim thresholds so that such blocks come from, and go
back to, the heap.

It changes the whole process's allocator, so the library never calls it on
its own: the command-line tools do, and a notebook or program that runs
completion or training on the CPU can. Freed memory up to `limit_bytes`
then stays with the process instead of going back to the system.

`free_memory(device)` is what training and batch completion size their
work against (a device's free bytes, the host's for a CPU device). Nothing
here imports JAX: it takes the device it is asked about.
"""
import ctypes
import ctypes.util
import os

# mallopt parameters (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

DEFAULT_LIMIT_BYTES = 1 << 30


def _glibc():
  """The C library if it is glibc (it has mallopt and gnu_get_libc_version),
  else None (macOS, musl, Windows)."""
  name = ctypes.util.find_library('c')
  if not name:
    return None
  try:
    libc = ctypes.CDLL(name)
    libc.gnu_get_libc_version  # pylint: disable=pointless-statement
    libc.mallopt  # pylint: disable=pointless-statement
  except (OSError, AttributeError):
    return None
  return libc


def reuse_freed_memory(limit_bytes: int = DEFAULT_LIMIT_BYTES) -> bool:
  """Serve blocks up to `limit_bytes` from the heap and keep up to that
  much freed memory for reuse (glibc's M_MMAP_THRESHOLD, M_TRIM_THRESHOLD).

  Returns whether the allocator took the setting: False on a C library
  other than glibc, where nothing changes. Calling it again is harmless.
  """
  if not 0 < limit_bytes < 2**31:  # mallopt takes a C int
    raise ValueError(f'limit_bytes={limit_bytes}: expected 1 ... 2**31 - 1')
  libc = _glibc()
  if libc is None:
    return False
  return all(libc.mallopt(param, int(limit_bytes)) == 1
             for param in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD))


def free_memory(device) -> int:
  """Bytes free on the JAX `device` (a CPU device: the host's available
  memory)."""
  stats = device.memory_stats() or {}
  if 'bytes_limit' in stats:
    return stats['bytes_limit'] - stats.get('bytes_in_use', 0)
  return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
