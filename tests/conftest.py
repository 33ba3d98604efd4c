"""Shared test set-up: a persistent XLA compilation cache for the session.

The training tests start several processes that compile the same tiny
programs; the on-disk cache makes each program compile once per session.
"""
import os
import tempfile

_CACHE = tempfile.mkdtemp(prefix='jaxinpaint-xla-cache-')
# Environment first, so subprocesses started by tests inherit it.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', _CACHE)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
# XLA:CPU's LLVM back end at optimization level 0: the tests' programs are
# tiny and run a few steps, so compiling them is most of the suite's time,
# and level 0 compiles them in about 40% less CPU time (the tiny training
# run: 33 s instead of 57 s), to float rounding the same numbers. The HLO
# passes (fusion, layout) are unchanged. A test that sets XLA_FLAGS for a
# subprocess replaces this; one already in the environment is kept.
if 'xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = ' '.join(filter(None, [
      os.environ.get('XLA_FLAGS'), '--xla_backend_optimization_level=0']))

import jax  # noqa: E402  (after the environment is set)

jax.config.update('jax_compilation_cache_dir',
                  os.environ['JAX_COMPILATION_CACHE_DIR'])
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
