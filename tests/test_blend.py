"""The blend of the encoder's categories with the TF-IDF baseline's: the mixture, its choice on
dev gold, storage in the model directory, loading, and its errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import GOLD_DIR, REPORTS, TEXTS
from fazhi.errors import FazhiError
from fazhi.models.blend import BASELINE_DIR, Blend, BlendClassifier
from fazhi.models.registry import load_classifier


def _probs(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    p = rng.random((n, k)) + 0.05
    return p / p.sum(axis=1, keepdims=True)


def test_the_mixture_is_each_member_at_the_ends_and_a_distribution_between():
    rng = np.random.default_rng(0)
    a, b = _probs(rng, 20, 8), _probs(rng, 20, 8)
    assert np.allclose(Blend(1.0).mix(a, b), a, atol=1e-6)
    assert np.allclose(Blend(0.0).mix(a, b), b, atol=1e-6)
    mixed = Blend(0.4, 0.7).mix(a, b)
    assert np.allclose(mixed.sum(axis=1), 1.0)
    # the temperature sharpens without moving any category
    assert (mixed.argmax(1) == Blend(0.4).mix(a, b).argmax(1)).all()
    assert mixed.max(1).mean() > Blend(0.4).mix(a, b).max(1).mean()
    for bad in (dict(weight=1.5), dict(weight=-0.1), dict(temperature=0.0)):
        with pytest.raises(ValueError):
            Blend(**bad)


def test_the_chosen_weight_follows_the_member_that_knows_the_labels():
    from fazhi.training.blend import choose_blend

    rng = np.random.default_rng(1)
    y = rng.integers(0, 6, 300)
    sure = np.full((300, 6), 0.02)
    sure[np.arange(300), y] = 0.9
    noise = _probs(rng, 300, 6)
    assert choose_blend(sure, noise, y).weight >= 0.8
    assert choose_blend(noise, sure, y).weight <= 0.2


def test_baseline_columns_follow_the_labels_asked_for(tiny_tfidf):
    from fazhi.models.tfidf import TfidfClassifier

    model = TfidfClassifier.load(tiny_tfidf)
    labels = list(reversed(model.labels)) + ["not_a_label"]
    probs = model.category_probabilities(TEXTS, None, labels)
    assert probs.shape == (len(TEXTS), len(labels)) and (probs[:, -1] == 0).all()
    preds = model.predict(TEXTS)
    for row, p in zip(probs, preds):
        assert labels[int(row.argmax())] == p.category
    assert model.category_probabilities([], None, labels).shape == (0, len(labels))


@pytest.mark.slow
def test_a_blend_is_fitted_stored_loaded_and_keeps_the_encoders_shortcomings(tiny_model, tiny_tfidf, tmp_path):
    from fazhi.models.bert import BertClassifier
    from fazhi.models.meta import ModelMeta
    from fazhi.training.blend import fit_blend

    model_dir, adapter = tmp_path / "m", tmp_path / "adapter"
    shutil.copytree(tiny_model[0], model_dir)
    adapter.mkdir()
    before = (model_dir / "fazhi.json").read_text()
    with pytest.raises(FazhiError, match="no such directory"):
        fit_blend(model_dir, tiny_tfidf, GOLD_DIR, [tmp_path / "missing"])
    with pytest.raises(FazhiError, match="tfidf.joblib"):
        fit_blend(model_dir, tmp_path, GOLD_DIR)
    assert (model_dir / "fazhi.json").read_text() == before  # nothing stored before an error

    record = fit_blend(model_dir, tiny_tfidf, GOLD_DIR, [adapter])
    stored = ModelMeta.read(model_dir).blend
    assert stored.to_dict() == record["blend"] and ModelMeta.read(adapter).blend == stored
    assert (model_dir / BASELINE_DIR / "tfidf.joblib").is_file()
    assert record["inputs"] > 60 and set(record["cross_fitted"]) == {"paragraph", "document_parsed"}

    blended = load_classifier(str(model_dir), backend="torch")
    assert isinstance(blended, BlendClassifier) and blended.blend == stored
    encoder = load_classifier(str(model_dir), backend="torch", blend=False)
    assert isinstance(encoder, BertClassifier)
    # a fixed half-and-half blend, so that the check does not depend on the fitted weight
    half = BlendClassifier(encoder, blended.baseline, Blend(0.5))
    enc_p, base_p, _ = half.member_probabilities(TEXTS)
    for pred, own, e, b in zip(half.predict(TEXTS), encoder.predict(TEXTS), enc_p, base_p):
        assert pred.shortcoming == own.shortcoming and pred.shortcoming_score == own.shortcoming_score
        assert pred.category == encoder.labels[int(np.argmax(e + b))]
        assert abs(sum(pred.scores.values()) - 1) < 1e-3
    assert half.predict([]) == []

    # the benchmark times and scores the blend and, as the pipeline runs it, its encoder alone
    from fazhi.training.bench import run_bench

    r = run_bench(model_dir, REPORTS[:1], GOLD_DIR, n=40, progress=False)
    assert r["encoder_paragraphs_per_s"] > 0 and 0 <= r["encoder_macro_f1"] <= 1
    assert r["encoder_macro_f1_delta"] == round(r["encoder_macro_f1"] - r["pipeline_macro_f1"], 4)
    assert r["macro_f1_delta"] == round(r["fazhi_macro_f1"] - r["pipeline_macro_f1"], 4)

    shutil.rmtree(model_dir / BASELINE_DIR)
    with pytest.raises(FazhiError, match="no tfidf/tfidf.joblib"):
        load_classifier(str(model_dir))

    # calibrating again changes the probabilities the blend was fitted on: the blend is dropped
    from fazhi.training.calibrate import calibrate

    calibrate(model_dir, GOLD_DIR, [adapter])
    assert ModelMeta.read(model_dir).blend is None and ModelMeta.read(adapter).blend is None
    assert isinstance(load_classifier(str(model_dir), backend="torch"), BertClassifier)


@pytest.mark.parametrize("blend, message", [({"weight": 1.5, "temperature": 1.0}, "blend: Value error"),
                                             ("half", "blend: Input should be")])
def test_a_bad_stored_blend_is_a_one_line_error(tmp_path, blend, message):
    from fazhi.models.meta import ModelMeta

    (tmp_path / "fazhi.json").write_text(json.dumps({"blend": blend}), encoding="utf-8")
    with pytest.raises(FazhiError, match=message) as err:
        ModelMeta.read(tmp_path)
    assert "\n" not in str(err.value)


def test_the_blend_command_names_a_bad_input_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "fazhi.cli", "models", "blend", "--model", str(tmp_path / "none"),
                           "--tfidf", str(tmp_path), "--gold", str(GOLD_DIR)], capture_output=True, text=True)
    assert done.returncode != 0
    lines = [l for l in done.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "tfidf.joblib" in lines[0], done.stderr


def test_the_release_blends_its_categories_as_its_adapter_says():
    from fazhi.models import RELEASE_ADAPTER

    stored = json.loads((RELEASE_ADAPTER / "fazhi.json").read_text(encoding="utf-8"))["blend"]
    model = load_classifier(None)
    assert isinstance(model, BlendClassifier) and model.blend == Blend(**stored)
    assert 0.0 < model.blend.weight < 1.0
    from fazhi.models.registry import model_dir

    card = (model_dir() / "README.md").read_text(encoding="utf-8")
    assert f"weight: {stored['weight']}" in card and "TF-IDF model in `tfidf/`" in card
