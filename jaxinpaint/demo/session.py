"""The demo's search session: the models a page loads (`Models`), one
completion run in a thread that the page watches (`watch_completion`, a
stream of `Update`s with previews every few steps), and its cancellation
when the visitor leaves; `warm_up` compiles it all before the first visitor.

JAX is imported where first needed (the search, the blend), so that
`jaxinpaint-demo --help` and its flag errors do not wait for it.
"""
import dataclasses
import functools
import queue
import threading

import numpy as np

from jaxinpaint import errors
from jaxinpaint.data import masks
from jaxinpaint.demo import page
from jaxinpaint.models import loading

PREVIEW_EVERY = 10  # Adam steps between two previews


class Models:
  """Loaded models by name (a shipped name or a path), loaded once."""

  def __init__(self):
    self._models, self._lock = {}, threading.Lock()

  def get(self, name):
    with self._lock:
      if name not in self._models:
        try:
          self._models[name] = loading.load_model(name)
        except errors.ArgumentError as e:
          raise errors.PageError(e.detail) from None
      return self._models[name]


@dataclasses.dataclass
class Update:
  """One view of a running (or finished) search, for the page."""
  done: int  # Adam steps finished
  steps: int
  generated: np.ndarray  # G(ẑ) uint8 (R, R, 3), the best restart now
  overlay: np.ndarray  # M·y + (1 − M)·G(ẑ), uint8
  blended: np.ndarray  # Poisson-blended, uint8
  losses: np.ndarray  # the best restart's loss per step so far
  final: bool = False


@functools.cache
def _blend_jit():
  import jax  # pylint: disable=g-import-not-at-top
  from jaxinpaint.ops import poisson  # pylint: disable=g-import-not-at-top
  return jax.jit(lambda y, guide, mask: poisson.poisson_blend(y, guide,
                                                               mask)[0])


def _preview(model, y, mask, z):
  """(G(z), overlay, blended) float of the latents z (1, z_dim)."""
  from jaxinpaint import completion  # pylint: disable=g-import-not-at-top
  generated = np.asarray(completion.generate(model, z))
  overlay = np.where(mask > 0.5, y, generated)
  return generated, overlay, np.asarray(_blend_jit()(y, generated, mask))


def watch_completion(model, image, mask, *, loss: str = 'paper', steps: int,
                     restarts: int, seed: int, every: int = PREVIEW_EVERY,
                     reference=None, cancel: threading.Event | None = None):
  """Runs the search of one image in a thread; yields an `Update` every
  `every` steps (G(ẑ) of the restart with the lowest loss so far, its
  overlay and blend) and a final one: `complete`'s own result.

  image, mask: (R, R, 3) in [-1, 1], (R, R, 1) 1 = known. With `reference`
  (R, R, 3): conditional completion, mask 1 = keep from `image`.
  """
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import completion
  y, m = image[None], mask[None]
  options = completion.Options(steps=steps, restarts=restarts)
  keys = completion.image_keys(seed, [0])
  events = queue.Queue()
  trace = []
  cancel = cancel or threading.Event()

  def on_steps(done, z, losses):
    if cancel.is_set():
      raise errors.Cancelled()
    losses = np.asarray(losses)[0]
    best = int(np.argmin(losses))
    trace.append((done, float(losses[best])))
    events.put(('step', done, np.asarray(z)[0, best][None]))

  def work():
    try:
      if reference is None:
        out = completion.complete(model, y, m, keys,
                                  spec=completion.get_loss(loss),
                                  options=options, on_steps=on_steps,
                                  every=every)
      else:
        out = completion.complete_conditional(
            model, y, reference[None], m, keys, options=options,
            on_steps=on_steps, every=every)
      events.put(('done', {k: np.asarray(v) for k, v in out.items()
                           if v is not None}))
    except errors.Cancelled:
      events.put(('cancelled', None))
    except Exception as e:  # pylint: disable=broad-except
      events.put(('error', e))

  thread = threading.Thread(target=work, daemon=True, name='completion')
  thread.start()
  try:
    while True:
      kind, *payload = events.get()
      if kind == 'step':
        done, z = payload
        if done == steps:
          continue  # the final update follows, with the search's own ẑ
        views = _preview(model, y, m, z)
        yield Update(done, steps, *(page.to_uint8(v[0]) for v in views),
                     losses=_trace_so_far(trace, done))
      elif kind == 'done':
        out = payload[0]
        yield Update(steps, steps, page.to_uint8(out['generated'][0]),
                     page.to_uint8(out['overlay'][0]),
                     page.to_uint8(out['blended'][0]),
                     losses=np.asarray(out['loss_trace'][0], np.float64),
                     final=True)
        return
      elif kind == 'error':
        raise payload[0]
      else:
        return
  finally:
    cancel.set()  # a closed generator (the visitor left) stops the search


def _trace_so_far(trace, done):
  return np.asarray([l for s, l in trace if s <= done], np.float64)


def warm_up(models_name: str):
  """Compiles the default settings' programs (the search, its previews, the
  blend) before the first visitor."""
  model = loading.load_model(models_name)
  r = model.resolution
  image = np.zeros((r, r, 3), np.float32)
  for _ in watch_completion(model, image, masks.center_mask(1, r, r)[0],
                            steps=PREVIEW_EVERY + 1,
                            restarts=page.DEFAULT_RESTARTS, seed=0):
    pass
