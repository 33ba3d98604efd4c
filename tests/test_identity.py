"""The identity measure (jaxinpaint/evaluation/identity.py): dlib's
face-recognition distances, the alignment on the original, the
`<identity>_<n>` grouping, the message without the `eval` extra, and its
columns in inpaint.py --evaluate (a tiny random model: its completions are
noise, which is all the columns need to be checked against the library).

dlib runs on the CPU, ~0.1 s an image here.
"""
import csv
import json
import shutil
import sys
import types

import numpy as np
import pytest
from PIL import Image

from helpers import load_experiment, shared_folder
from jaxinpaint import models
from jaxinpaint.cli import inpaint
from jaxinpaint.errors import InputError
from jaxinpaint.evaluation import identity
from jaxinpaint.inpaint_job import identity_columns, inputs
from jaxinpaint.models import checkpoint
from jaxinpaint.training import config_schema

FACES = inputs.EXAMPLES / 'faces'
needs_dlib = pytest.mark.skipif(
    not identity.available(),
    reason="dlib or face_recognition_models is not installed (pip install "
           "-e '.[eval]')")


def load(path):
  with Image.open(path) as image:
    return np.asarray(image.convert('RGB'))


def example_faces(n):
  return np.stack([load(p) for p in sorted(FACES.iterdir())[:n]])


def holed(image, value=128):
  """The image with its central square (the `center` mask's) replaced."""
  out = image.copy()
  out[16:48, 16:48] = value
  return out


@needs_dlib
def test_same_image_is_at_distance_zero():
  faces = example_faces(2)
  d = identity.descriptors(faces)
  assert d.shape == (2, 128) and d.dtype == np.float32
  np.testing.assert_allclose(identity.descriptors(faces[:1]), d[:1],
                             atol=1e-6)
  assert np.linalg.norm(d[0] - d[1]) > 0.3  # two people


@needs_dlib
def test_another_person_is_farther_than_a_donor_photo():
  """The same photo ~0 < another photo of the same person (a donor) <
  another person's photo."""
  folder = shared_folder('celeba64', 'test')
  photo, donor, other = (load(folder / f'{n}.jpg') for n in
                         ('10085_014258', '10085_038768', '10090_184089'))
  d = identity.descriptors(np.stack([photo, photo, donor, other]))
  to = lambda j: float(np.linalg.norm(d[0] - d[j]))
  assert to(1) < 1e-6 < to(2) < to(3)


@needs_dlib
def test_a_completion_is_aligned_with_its_original(monkeypatch):
  """The landmarks (from the detector's rectangle) of a completion are its
  original's: face_shape only ever sees the originals."""
  original = load(FACES / '1262_029820.jpg')[None]  # HOG finds this face
  completed = holed(original[0], 0)[None]
  # The hole would move the landmarks, had the completion been aligned.
  own, _ = identity.face_shape(completed[0])
  theirs, found = identity.face_shape(original[0])
  assert found
  assert [(p.x, p.y) for p in own.parts()] != [(p.x, p.y)
                                              for p in theirs.parts()]
  seen = []
  real = identity.face_shape
  monkeypatch.setattr(identity, 'face_shape',
                      lambda image: seen.append(np.array(image)) or real(image))
  got = identity.descriptors(completed, align_to=original)
  assert seen and all(np.array_equal(s, original[0]) for s in seen)
  *_, net = identity._models()  # pylint: disable=protected-access
  want = np.array(net.compute_face_descriptor(identity.prepare(completed[0]),
                                              theirs))
  np.testing.assert_allclose(got[0], want, atol=1e-6)

  seen.clear()
  identity.identity_distances(completed, original, ['1_1'])
  assert seen and all(np.array_equal(s, original[0]) for s in seen)


@needs_dlib
def test_without_a_face_the_whole_image_is_the_rectangle():
  face = load(FACES / '10085_014258.jpg')  # HOG finds no face here
  shape, found = identity.face_shape(face)
  assert not found
  # prepare: 4x to 256 px, then 64 px of padding on each side.
  r = shape.rect
  assert (r.left(), r.top(), r.right(), r.bottom()) == (64, 64, 319, 319)
  got = identity.identity_distances(face[None], face[None], ['1_1'])
  assert got['face_detected'][0] == 0


def test_identity_grouping():
  names = ['10_1', '10_2', '7_003', 'face0', '10_a', 'x_1', '12_3', '7',
           '3_4_5', '10_3']
  assert [identity.identity_of(n) for n in names] == [
      '10', '10', '7', None, None, None, '12', None, None, '10']
  assert identity.groups(names) == {'10': [0, 1, 9], '7': [2], '12': [6]}
  assert identity.has_references(names)
  assert not identity.has_references(['1_1', '2_1', 'face0', '08000_0'])


@needs_dlib
def test_distances_to_the_other_photos_only():
  """Each image against the OTHER photos of its person, not itself; a
  person with one photo is left out and counted."""
  faces = example_faces(3)
  names = ['5_1', '5_2', '6_1']
  d = identity.descriptors(faces)
  completed = np.stack([holed(f) for f in faces])
  got = identity.identity_distances(completed, faces, names)
  ours = identity.descriptors(completed, align_to=faces)
  np.testing.assert_allclose(got['identity'][:2],
                             [np.linalg.norm(ours[0] - d[1]),
                              np.linalg.norm(ours[1] - d[0])], rtol=1e-5)
  np.testing.assert_allclose(got['identity_original'][:2],
                             np.linalg.norm(d[0] - d[1]), rtol=1e-5)
  assert np.isnan(got['identity'][2]) and np.isnan(got['identity_original'][2])
  summary = identity.summarize(got)
  assert summary['identity_count'] == 2 and summary['identity_left_out'] == 1
  assert summary['identity_mean'] == pytest.approx(got['identity'][:2].mean())
  assert summary['identity_rate'] == np.mean(got['identity'][:2] < 0.6)
  # References given apart, read on demand: the same numbers.
  read = []
  refs = identity.References(names, lambda rows: read.append(rows) or
                             faces[rows])
  again = identity.identity_distances(completed[:1], faces[:1], names[:1],
                                      refs)
  np.testing.assert_allclose(again['identity'], got['identity'][:1],
                             rtol=1e-6)
  assert [list(r) for r in read] == [[1]]  # only the other photo was read


def test_missing_extra_says_how_to_install(monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, 'dlib', None)  # import dlib fails
  identity._models.cache_clear()  # pylint: disable=protected-access
  try:
    assert not identity.available()
    with pytest.raises(InputError) as e:
      identity.descriptors(example_faces(1))
    assert str(e.value) == identity.MISSING
    assert "pip install -e '.[eval]'" in str(e.value)
    # inpaint.py --evaluate: no columns, one note.
    plan = types.SimpleNamespace(
        settings=types.SimpleNamespace(evaluate=True), reference=None,
        images=object(), names=['1_1', '1_2'])
    assert identity_columns.for_plan(plan) is None
    # The tables: no columns, one note.
    common = load_experiment('paper_tables').common
    assert common.identity_references(['1_1', '1_2'], None) is None
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("pip install -e '.[eval]'" in line
                                 for line in err)
  finally:
    identity._models.cache_clear()  # pylint: disable=protected-access


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
  c = config_schema.base_config()
  c.model.resolution, c.model.width, c.model.z_dim = 64, 4, 16
  path = tmp_path_factory.mktemp('model') / 'tiny64'
  checkpoint.export_inference(path, c, models.random_variables(c.model), 1)
  return str(path)


@needs_dlib
def test_inpaint_evaluate_adds_the_identity_columns(tiny_model, tmp_path,
                                                    capsys):
  """metrics.csv: each completion (the PNG written) and its original
  against the other inputs of its person; empty for a person with one
  input. summary.json: the numbers over those; --resume recomputes the
  same from the PNGs."""
  names = ['5_1', '6_1', '5_2']
  folder = tmp_path / 'in'
  folder.mkdir()
  for name, path in zip(names, sorted(FACES.iterdir())):
    shutil.copy(path, folder / f'{name}{path.suffix}')
  out = tmp_path / 'out'
  argv = ['--checkpoint', tiny_model, '--input', str(folder), '--out',
          str(out), '--evaluate', '--mask', 'center', '--steps', '2',
          '--batch-size', '2']
  summary = inpaint.main(argv)
  stdout = capsys.readouterr().out
  with open(out / 'metrics.csv', encoding='utf-8') as f:
    rows = {r['name']: r for r in csv.DictReader(f)}
  names = sorted(names)  # the inputs' order
  originals = np.stack([load(p) for p in sorted(folder.iterdir())])
  written = np.stack([load(out / f'{n}.png') for n in names])
  want = identity.identity_distances(written, originals, names)
  for i, name in enumerate(names):
    for key in identity.PER_IMAGE_KEYS:
      cell = rows[name][key]
      if np.isnan(want[key][i]):
        assert cell == '', (name, key)
      else:
        assert float(cell) == pytest.approx(want[key][i], abs=1e-6)
  assert rows['6_1']['identity'] == '' and rows['5_1']['identity'] != ''
  on_disk = json.loads((out / 'summary.json').read_text())
  assert on_disk['identity_count'] == 2 and on_disk['identity_left_out'] == 1
  assert on_disk['identity_mean'] == pytest.approx(
      np.nanmean(want['identity']))
  assert summary['identity_mean'] == on_disk['identity_mean']
  assert 'identity: distance to the other photos' in stdout

  # --resume with everything done: the same numbers, from the PNGs.
  (out / 'metrics.csv').unlink()
  (out / 'summary.json').unlink()
  again = inpaint.main(argv + ['--resume'])
  assert {k: v for k, v in again.items() if k.startswith('identity')} == {
      k: v for k, v in on_disk.items() if k.startswith('identity')}
