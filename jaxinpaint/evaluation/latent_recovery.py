"""Latent recovery: what the latent search recovers when the answer is in
G's range.

Targets x* = G(z*), with z* drawn as the search draws its starts and
projected into its constraint set, lose a hole; each loss then searches ẑ.
A perfect search would find z* (or another z with the same image), so the
hole errors measure the search alone, apart from how well G covers real
images.
"""
import jax
import numpy as np

from jaxinpaint import completion, models
from jaxinpaint.completion import batched
from jaxinpaint.data import masks
from jaxinpaint.ops import metrics, poisson


def targets(model: models.Model, n: int, seed: int, options):
  """(z* (n, z_dim), x* = G(z*) (n, R, R, 3)): G's own samples, z* drawn
  from the model's latent distribution as the search draws its starts
  (`completion.initial_latents`, one per key of `image_keys(seed, i)`) and
  then projected into `options`' constraint set, so the search could reach
  it exactly. With the search's own seed and one restart, z* is the
  search's projected starting point."""
  keys = completion.image_keys(seed, np.arange(n))
  z_star = jax.vmap(lambda k: completion.constrain_latent(
      completion.initial_latents(k, 1, model.z_dim, model.arch, options)[0],
      options))(keys)
  x_star = jax.jit(model.nets['generator'].apply)(
      model.variables['generator'], z_star)
  return np.asarray(z_star), np.asarray(x_star, np.float32)


def measure(model: models.Model, *, losses=('paper', 'yeh'),
            constraints=('box', 'sphere'), z_bound: float = 1.0, n: int = 16,
            mask: str = 'center', steps: int = 200, restarts: int = 1,
            seed: int = 0, target_seed: int = 1, batch_size: int = 16,
            progress: bool = False, tune_steps: int = 0,
            tune_options=None) -> list:
  """The search's errors on G's own samples.

  For each constraint ('box' with `z_bound`, 'sphere'), n targets x* =
  G(z*) with z* inside the constraint set (`targets`, seed `target_seed`)
  lose their `mask` holes (default: the central square); each loss of
  `losses` (`completion.LOSSES` names) then searches with `steps` Adam
  steps under that constraint (seed `seed`).

  Returns one dict per (constraint, loss): 'constraint', 'loss', the hole
  MSEs on uint8 values of G(ẑ) ('g_hole_mse') and of the Poisson blend
  ('blend_hole_mse') against x*, the harmonic fill's ('harmonic_hole_mse',
  the no-model baseline, the same for every loss), the mean L2 norm
  |ẑ − z*| ('z_l2'), its per-coordinate RMS ('z_rms'), the mean of the
  kept restarts' final losses ('final_loss'), n, steps, restarts,
  tune_steps.

  tune_steps, tune_options: pivotal tuning after the search
  (`completion.Tuning.steps` and a dict of its other fields, e.g. lr);
  the blend is then of G_θ(ẑ), and 'g_hole_mse' is G_θ(ẑ)'s.
  """
  for c in constraints:
    completion.check_constraint(completion.Options(z_constraint=c,
                                                   z_bound=z_bound))
  specs = {name: completion.get_loss(name) for name in losses}
  holes_mask = masks.make_masks(mask, n, model.resolution, model.resolution,
                                seed)

  def hole_mse(a, b):
    return float(np.mean(metrics.hole_mse(
        metrics.to_uint8(a).astype(np.float32),
        metrics.to_uint8(b).astype(np.float32), holes_mask)))

  rows = []
  for constraint in constraints:
    options = completion.Options(steps=steps, restarts=restarts,
                                 z_constraint=constraint, z_bound=z_bound,
                                 tuning=completion.Tuning(
                                     steps=tune_steps, **(tune_options or {})))
    z_star, x_star = targets(model, n, target_seed, options)
    y = np.where(holes_mask > 0.5, x_star, np.float32(0))
    harmonic_fill, _ = poisson.harmonic_fill(y, holes_mask)
    harmonic_mse = hole_mse(harmonic_fill, x_star)
    for name, spec in specs.items():
      out = batched.inpaint_batches(
          model, y, holes_mask, np.arange(n), spec=spec, options=options,
          batch_size=batch_size, seed=seed, progress=progress)
      dz = out['z'] - z_star
      rows.append(dict(
          constraint=constraint, loss=name,
          g_hole_mse=hole_mse(out['generated'], x_star),
          blend_hole_mse=hole_mse(out['blended'], x_star),
          harmonic_hole_mse=harmonic_mse,
          z_l2=float(np.mean(np.linalg.norm(dz, axis=-1))),
          z_rms=float(np.sqrt(np.mean(dz * dz))),
          final_loss=float(out['final_loss'].min(axis=1).mean()),
          n=n, steps=steps, restarts=restarts, tune_steps=tune_steps))
  return rows
