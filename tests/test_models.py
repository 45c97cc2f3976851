"""Classifiers: rules, TF-IDF and a tiny BERT trained for a few steps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import BASE, GOLD_DIR, SAMPLE, TEXTS
from fazhi.corpora import read_document
from fazhi.corpora.dataset import build
from fazhi.corpora.taxonomy import load_taxonomy
from fazhi.errors import FazhiError
from fazhi.models.base import document_inputs
from fazhi.models.registry import load_classifier

def test_rules_predictions_are_distributions():
    preds = load_classifier("rules").predict(TEXTS)
    assert [p.category for p in preds[:2]] == ["dispute_resolution", "enforcement"]
    assert preds[2].shortcoming and not preds[0].shortcoming
    for p in preds:
        assert abs(sum(p.scores.values()) - 1) < 1e-3


def test_tfidf_fit_save_load(corpus, tmp_path):
    from fazhi.models.tfidf import TfidfClassifier

    train = corpus["train"]
    clf = TfidfClassifier().fit(train["text"], train["category"], train["shortcoming"], train["heading_path"])
    before = clf.predict(TEXTS)
    clf.save(tmp_path / "tfidf")
    after = load_classifier(tmp_path / "tfidf").predict(TEXTS)
    assert [p.to_dict() for p in before] == [p.to_dict() for p in after]
    assert set(before[0].scores) == set(clf.labels)


def test_tfidf_rows_without_category_fit_the_shortcoming_model_alone(corpus):
    from fazhi.models.tfidf import TfidfClassifier

    train = corpus["train"]
    masked = [None if c == "leadership" else c for c in train["category"]]
    clf = TfidfClassifier().fit(train["text"], masked, train["shortcoming"], train["heading_path"])
    assert "leadership" not in clf.labels and "enforcement" in clf.labels
    full = TfidfClassifier().fit(train["text"], train["category"], train["shortcoming"], train["heading_path"])
    assert [p.shortcoming_score for p in clf.predict(TEXTS)] == [p.shortcoming_score for p in full.predict(TEXTS)]


@pytest.mark.slow
def test_shortcoming_only_documents_leave_the_category_head_untrained(tiny_base, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from fazhi.corpora.synthesis import write_reports
    from fazhi.training.train import TrainArgs, load_base, train

    build(write_reports(tmp_path / "synthetic", 4, seed=7), tmp_path / "dd", load_taxonomy(), validation=0.25,
          progress=False)
    torch.manual_seed(13)  # training's seed: the same randomly initialised category head
    init = load_base(str(tiny_base), load_taxonomy().labels)[0].classifier.weight.detach().clone()

    def change(shortcoming_only: str | None) -> float:
        out = tmp_path / f"m-{bool(shortcoming_only)}"
        train(TrainArgs(data=str(tmp_path / "dd"), base_model=str(tiny_base), out=str(out), epochs=2, batch_size=16,
                        lr=1e-2, max_length=32, lora_r=2, shortcoming_only=shortcoming_only, progress=False))
        trained = AutoModelForSequenceClassification.from_pretrained(out).classifier.weight.detach()
        return float((trained - init).norm() / init.norm())

    # every document here is synthetic/…: masked, the category head moves by weight decay alone
    assert change(None) > 0.1
    assert change("synthetic/") < 0.01


@pytest.mark.slow
def test_tiny_bert_loss_decreases(tiny_model):
    _, summary = tiny_model
    losses = summary["train_losses"]
    # epoch means, not one batch: a random 2-layer base learns slowly, and a single batch's loss is noise
    assert len(losses) == len(summary["history"]) and losses[-1] < losses[0]
    assert summary["train_paragraphs_per_s"] > 0


def test_shortcoming_head_scores_the_strongest_real_token(tmp_path):
    """A paragraph scores as its strongest token, wherever that token sits; padding never counts."""
    import torch
    from safetensors.torch import save_file

    from fazhi.models.bert import SC_HEAD, ShortcomingHead, load_shortcoming_head, save_shortcoming_head

    torch.manual_seed(0)
    head = ShortcomingHead(8)
    states = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    token = head.score(states).squeeze(-1)  # (2, 5)
    logits = head(states, mask)
    assert logits.shape == (2, 2) and torch.all(logits[:, 0] == 0)
    assert torch.allclose(logits[:, 1], torch.stack([token[0, :3].max(), token[1].max()]))
    # the real tokens in reverse order (padding in place): the same score
    assert torch.allclose(head(states[:, [2, 1, 0, 3, 4]], mask)[0], logits[0])
    # padding that would score highest is ignored
    loud = states.clone()
    loud[0, 3:] = 100 * head.score.weight[0]
    assert torch.equal(head(loud, mask)[0], logits[0])

    save_shortcoming_head(head, tmp_path)
    assert torch.equal(load_shortcoming_head(tmp_path)(states, mask), logits)
    (tmp_path / "old").mkdir()
    save_file({"weight": torch.zeros(2, 8), "bias": torch.zeros(2)}, str(tmp_path / "old" / SC_HEAD))
    with pytest.raises(FazhiError, match="older format"):
        load_shortcoming_head(tmp_path / "old")


@pytest.mark.slow
def test_save_load_identical_and_deterministic(tiny_model):
    path, _ = tiny_model
    a = load_classifier(path).predict(TEXTS, [None, ["一、工作情况"], None])
    b = load_classifier(path).predict(TEXTS, [None, ["一、工作情况"], None])
    assert [p.to_dict() for p in a] == [p.to_dict() for p in b]
    assert abs(sum(a[0].scores.values()) - 1) < 1e-3


@pytest.mark.slow
def test_hf_pipeline_and_auto_class_load_the_saved_model(tiny_model):
    from transformers import AutoModelForSequenceClassification, pipeline

    path, summary = tiny_model
    model = AutoModelForSequenceClassification.from_pretrained(path)
    assert [model.config.id2label[i] for i in range(model.config.num_labels)] == summary["labels"]
    out = pipeline("text-classification", model=str(path))(TEXTS[0])
    assert out[0]["label"] in summary["labels"]
    # the pipeline and fazhi agree on the category
    assert out[0]["label"] == load_classifier(path).predict(TEXTS[:1])[0].category


@pytest.mark.slow
def test_adapter_merge_reproduces_the_trained_model(tiny_model, tiny_base, tmp_path):
    from fazhi.training.release import merge_adapter

    path, _ = tiny_model
    merged = merge_adapter(tiny_base, path / "adapter", tmp_path / "merged")
    a = load_classifier(path).predict(TEXTS)
    b = load_classifier(merged).predict(TEXTS)
    for x, y in zip(a, b):
        assert x.category == y.category
        assert max(abs(x.scores[k] - y.scores[k]) for k in x.scores) < 1e-3
    card = (merged / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "base_model:" in card and "metrics_command:" in card

    # `fazhi models card` records an evaluation of the merged model in the adapter and the card
    from fazhi.training.evaluate import evaluate
    result = evaluate(load_classifier(merged), GOLD_DIR)
    (tmp_path / "eval.json").write_text(json.dumps(result), encoding="utf-8")
    adapter = shutil.copytree(path / "adapter", tmp_path / "adapter")
    card_cmd = [sys.executable, "-m", "fazhi.cli", "models", "card", "--adapter", str(adapter), "--model", str(merged)]
    done = subprocess.run(card_cmd + ["--eval", str(tmp_path / "eval.json")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    stored = json.loads((adapter / "fazhi.json").read_text())["metrics"]
    assert stored["gold_dev_paragraph"]["category_macro_f1"] == result["paragraph"]["category_macro_f1"]
    assert stored["gold_dev_document"]["shortcoming_f1"] == result["document"]["shortcoming_f1"]
    card = (merged / "README.md").read_text(encoding="utf-8")
    assert f"category_macro_f1: {result['document']['category_macro_f1']}" in card
    (tmp_path / "bad.json").write_text('{"paragraph": {}}', encoding="utf-8")
    bad = subprocess.run(card_cmd + ["--eval", str(tmp_path / "bad.json")], capture_output=True, text=True)
    assert bad.returncode == 2 and "not an `fazhi evaluate` result" in bad.stderr
    assert json.loads((adapter / "fazhi.json").read_text())["metrics"] == stored  # nothing stored is lost


def test_bad_model_inputs(tmp_path):
    with pytest.raises(FazhiError, match="model directory not found"):
        load_classifier(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    with pytest.raises(FazhiError, match="not a model directory"):
        load_classifier(tmp_path / "junk")
    result = subprocess.run([sys.executable, "-m", "fazhi.cli", "train", "--data", str(tmp_path / "junk"),
                             "--base-model", str(BASE), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode == 2 and "not a corpus directory" in result.stderr
    result = subprocess.run([sys.executable, "-m", "fazhi.cli", "train", "--data", str(tmp_path / "junk"),
                             "--model-type", "svm", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice: 'svm'" in result.stderr


def test_classify_rejects_lone_surrogates_in_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "依法行政"}\n{"text": "依法", "heading_path": ["\\ud800"]}\n', encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "fazhi.cli", "classify", "--model", "rules", "--input", str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == f"fazhi: error: {bad}:2: 'heading_path' contains a lone surrogate, not valid Unicode text"


def test_empty_training_data(tmp_path):
    from datasets import Dataset, DatasetDict

    empty = {c: [] for c in ("text", "category", "shortcoming", "confidence", "doc_id", "heading_path", "label_source")}
    DatasetDict({"train": Dataset.from_dict(empty), "validation": Dataset.from_dict(empty)}).save_to_disk(str(tmp_path / "e"))
    result = subprocess.run([sys.executable, "-m", "fazhi.cli", "train", "--data", str(tmp_path / "e"),
                             "--base-model", str(BASE), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode == 2 and "train split is empty" in result.stderr


def test_release_model_tags_the_sample_report():
    """The model `make setup` builds: loads with the HF pipeline and tags a whole report."""
    from fazhi.models.registry import model_dir

    if not (model_dir() / "config.json").is_file():
        pytest.fail("release model missing: `make setup` builds build/release-model")
    doc = read_document(SAMPLE)
    preds = load_classifier(None).predict(*document_inputs(doc))
    by_text = {p.text: r for p, r in zip(doc.paragraphs, preds)}
    assert by_text["（五）依法有效化解社会矛盾纠纷"].category == "dispute_resolution"
    assert by_text["（二）坚持依法科学民主决策"].category == "decision_making"
    assert any(r.shortcoming for r in preds) and not all(r.shortcoming for r in preds)


def test_a_heading_that_names_problems_does_not_flag_the_achievements_under_it():
    """The release's shortcoming head maxes over the paragraph's own tokens: the same achievement
    stays unflagged under a problems heading, while a stated problem stays flagged under any heading."""
    clf = load_classifier(None)
    achievement = "组织执法人员培训考试3次，参训率100%，考试合格率98%。"
    problem = "部分执法人员业务能力不足，执法不规范的问题仍然存在。"
    problems_heading = ["三、存在的问题和不足", "（一）执法方面存在的问题"]
    preds = clf.predict([achievement, achievement, problem, problem],
                        [None, problems_heading, None, ["二、主要工作", "（一）严格规范公正文明执法"]])
    assert [p.shortcoming for p in preds] == [False, False, True, True], [p.shortcoming_score for p in preds]


@pytest.mark.slow
def test_train_cli_options_reach_the_training_record(tiny_model, tiny_base, tmp_path):
    path, _ = tiny_model
    out = tmp_path / "m"
    cmd = [sys.executable, "-m", "fazhi.cli", "train", "--data", str(path.parent / "dd"), "--base-model", str(tiny_base),
           "--out", str(out), "--epochs", "1", "--max-examples", "16", "--max-length", "32", "--lora-r", "2"]
    result = subprocess.run([*cmd, "--drop-context", "1.0"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    args = json.loads((out / "training.json").read_text())["args"]
    assert args["drop_context"] == 1.0 and args["lora_r"] == 2 and args["max_length"] == 32
    bad = subprocess.run([*cmd, "--drop-context", "1.5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--drop-context" in bad.stderr
