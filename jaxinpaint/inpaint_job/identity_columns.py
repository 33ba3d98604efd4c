"""--evaluate's identity columns (`evaluation.identity`): is each completion
still the same person, by dlib's face-recognition network?

They are added to metrics.csv and summary.json when the input names are
`<identity>_<n>` (CelebA's) and some person has several inputs: the other
photos of a person are the other inputs of the same identity (their
originals, never their completions). Without the `eval` extra, one note
says how to get them.
"""
from jaxinpaint.inpaint_job import inputs


class Columns:
  """The identity columns of a run's images, the references' descriptors
  computed once each (originals read from `images`, a rows reader)."""

  def __init__(self, names, images):
    # pylint: disable-next=g-import-not-at-top
    from jaxinpaint.evaluation import identity
    from jaxinpaint.ops import metrics  # pylint: disable=g-import-not-at-top
    self.keys = identity.PER_IMAGE_KEYS
    self.names = [str(n) for n in names]
    self._identity, self._to_uint8 = identity, metrics.to_uint8
    self.references = identity.References(
        self.names, lambda rows: metrics.to_uint8(images.read(rows)))

  def per_image(self, rows, completed, originals) -> dict:
    """{column: (K,)} of the images `rows` (indices), completed and
    original, float in [-1, 1] (compared as the uint8 PNGs hold them)."""
    return self._identity.identity_distances(
        self._to_uint8(completed), self._to_uint8(originals),
        [self.names[i] for i in rows], self.references)

  def summary(self, per_image) -> dict:
    """summary.json's identity numbers from the writer's columns."""
    return self._identity.summarize(per_image)


def for_plan(plan):
  """The run's `Columns`, or None: no --evaluate, a conditional run, names
  that give no person a second photo, or the extra missing (then a note)."""
  if (not plan.settings.evaluate or plan.reference is not None
      or plan.images is None):
    return None
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint.evaluation import identity
  if not identity.has_references([str(n) for n in plan.names]):
    return None
  if not identity.available():
    inputs.note("note: --evaluate adds the identity columns (is it still "
                "the same person?) with dlib: pip install -e '.[eval]'")
    return None
  return Columns(plan.names, plan.images)


def summary(columns, per_image) -> dict:
  """The identity numbers of summary.json ({} without columns)."""
  return {} if columns is None else columns.summary(per_image)
