"""host_memory.reuse_freed_memory: freed blocks are reused, not re-faulted.

Counted in page faults (not time) in a fresh interpreter, so that the test
process's own allocator is left alone.
"""
import subprocess
import sys

import pytest

from jaxinpaint import host_memory

# Allocates, touches and frees a 64 MiB block (above glibc's largest
# dynamic mmap threshold, 32 MiB) five times; prints the minor page faults
# per round.
_ROUNDS = '''
import resource, sys
import numpy as np
from jaxinpaint import host_memory
if sys.argv[1] == 'reuse':
  assert host_memory.reuse_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = np.empty(16 << 20, np.float32); block.fill(1); del block
before = faults()
for _ in range(5):
  block = np.empty(16 << 20, np.float32); block.fill(1); del block
print((faults() - before) / 5)
'''


def faults_per_round(mode):
  out = subprocess.run([sys.executable, '-c', _ROUNDS, mode], check=True,
                       capture_output=True, text=True)
  return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(host_memory._glibc() is None,  # pylint: disable=protected-access
                    reason='reuse_freed_memory changes glibc only')
def test_freed_blocks_are_reused_instead_of_faulted_again():
  # glibc's default: each round maps a fresh block, one fault per page
  # (per 2 MiB page where transparent huge pages apply, so > 30 either way).
  assert faults_per_round('default') > 30
  assert faults_per_round('reuse') < 2


def test_limit_is_checked():
  for bad in (0, -1, 2**31):
    with pytest.raises(ValueError, match='limit_bytes'):
      host_memory.reuse_freed_memory(bad)
