"""Shared test set-up: a persistent XLA compilation cache for the session.

The training tests start several processes that compile the same tiny
programs; the on-disk cache makes each program compile once per session.
"""
import logging
import os
import tempfile

_CACHE = tempfile.mkdtemp(prefix='jaxinpaint-xla-cache-')
# Environment first, so subprocesses started by tests inherit it.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', _CACHE)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import jax  # noqa: E402  (after the environment is set)
import pytest  # noqa: E402

jax.config.update('jax_compilation_cache_dir',
                  os.environ['JAX_COMPILATION_CACHE_DIR'])
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


@pytest.fixture
def notes(caplog, monkeypatch):
  """() -> the library's notes logged so far in the test: the messages of
  the `jaxinpaint` loggers' WARNINGs (`loading.load_model` logs, the CLIs
  print). A CLI run in-process earlier stopped their propagation to the
  root logger, where caplog listens (`cli.common`): on again here."""
  monkeypatch.setattr(logging.getLogger('jaxinpaint'), 'propagate', True)
  caplog.set_level(logging.WARNING, logger='jaxinpaint')
  return lambda: [r.getMessage() for r in caplog.records
                  if r.name.split('.')[0] == 'jaxinpaint']
