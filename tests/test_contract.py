"""One contract, checked on every classifier and backend (as scikit-learn's check_estimator does):
rules, tfidf, BERT on torch and BERT on ONNX Runtime (int8 with float32 re-scoring, and float32 alone)."""

from __future__ import annotations

import math

import pytest

from conftest import TEXTS
from fazhi.models.base import Prediction
from fazhi.models.registry import load_classifier

PATHS = [["一、推进严格规范公正文明执法"], [], ["二、存在的问题", "（一）执法"]]
CASES = ["rules", "tfidf", "bert-torch", "bert-onnx", "bert-float32"]


@pytest.fixture(scope="module", params=CASES)
def clf(request):
    if request.param == "rules":
        return load_classifier("rules")
    if request.param == "tfidf":
        return load_classifier(str(request.getfixturevalue("tiny_tfidf")))
    backend = request.param.removeprefix("bert-")
    return load_classifier(str(request.getfixturevalue("tiny_onnx")), backend=backend)


def test_labels_come_from_the_model_and_order_every_score_dict(clf):
    from fazhi.corpora.taxonomy import load_taxonomy

    assert sorted(clf.labels) == sorted(load_taxonomy().labels) and len(set(clf.labels)) == len(clf.labels)
    for p in clf.predict(TEXTS, PATHS):
        assert isinstance(p, Prediction) and list(p.scores) == clf.labels
        assert math.isclose(sum(p.scores.values()), 1.0, abs_tol=1e-3)
        assert p.category == max(p.scores, key=p.scores.get)
        assert 0.0 <= p.shortcoming_score <= 1.0


def test_none_and_empty_heading_paths_mean_the_same(clf):
    none = clf.predict(TEXTS)
    assert none == clf.predict(TEXTS, None) == clf.predict(TEXTS, [[]] * len(TEXTS)) \
        == clf.predict(TEXTS, [None] * len(TEXTS))


def test_empty_input_gives_no_predictions(clf):
    assert clf.predict([]) == [] and clf.predict([], []) == []


def test_batching_and_repetition_change_nothing(clf):
    whole = clf.predict(TEXTS * 3, PATHS * 3)
    one_by_one = [clf.predict([t], [p])[0] for t, p in zip(TEXTS * 3, PATHS * 3)]
    assert [p.category for p in whole] == [p.category for p in one_by_one]
    assert [p.shortcoming for p in whole] == [p.shortcoming for p in one_by_one]
    # padding to a longer batch moves float sums in the last digits only
    assert all(abs(a.scores[k] - b.scores[k]) < 2e-3 for a, b in zip(whole, one_by_one) for k in a.scores)
    assert clf.predict(TEXTS, PATHS) == clf.predict(TEXTS, PATHS)  # deterministic


def test_mismatched_heading_paths_are_a_clear_error(clf):
    from fazhi.errors import FazhiError

    with pytest.raises(FazhiError, match="2 heading paths for 3 texts"):
        clf.predict(TEXTS, PATHS[:2])


def test_bert_backends_share_one_class_and_can_both_be_saved(tiny_onnx, tmp_path):
    torch_clf = load_classifier(str(tiny_onnx), backend="torch")
    onnx_clf = load_classifier(str(tiny_onnx), backend="onnx")
    assert type(torch_clf) is type(onnx_clf) and torch_clf.labels == onnx_clf.labels
    assert onnx_clf.backend.startswith("onnxruntime") and torch_clf.backend == "torch"
    for name, clf in (("t", torch_clf), ("o", onnx_clf)):
        again = load_classifier(str(clf.save(tmp_path / name)), backend="torch")
        assert [p.category for p in again.predict(TEXTS)] == [p.category for p in torch_clf.predict(TEXTS)]
