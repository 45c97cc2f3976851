"""Human labels as a corpus source, the Trainer path on other architectures, calibration and
the evaluation's intervals, ECE and error list."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import GOLD_DIR, REPORTS, SHARED, TEXTS
from fazhi.corpora import parse_text
from fazhi.corpora.dataset import build, load, stats
from fazhi.corpora.gold import load_gold
from fazhi.corpora.taxonomy import load_taxonomy
from fazhi.errors import FazhiError
from fazhi.models.registry import load_classifier

ANNOTATED = SHARED / "corpora" / "annotated"


def test_a_gold_source_builds_with_the_heading_paths_of_its_report(tmp_path):
    dd = build([GOLD_DIR], tmp_path / "dd", load_taxonomy(), validation=0.0, progress=False)
    rows = list(dd["train"])
    gold = load_gold(GOLD_DIR)
    kept = [r for doc in gold.values() for r in doc if r["kind"] != "meta"]
    assert len(rows) == len(kept) and all(r["label_source"] == "human:dev" and r["confidence"] == 1.0 for r in rows)
    assert [(r["text"], r["category"], r["shortcoming"], r["kind"]) for r in rows] == \
        [(r["text"], r["category"], bool(r["shortcoming"]), r["kind"]) for r in kept]
    # heading paths are those of the report the file joins back into
    name, lines = next(iter(gold.items()))
    doc = parse_text("\n".join(r["text"] for r in lines))
    parsed = {p.text: p.heading_path for p in doc.paragraphs}
    mine = [r for r in rows if r["doc_id"] == f"human/{name}"]
    assert any(r["heading_path"] for r in mine)
    assert all(r["heading_path"] == parsed[r["text"]] for r in mine if r["text"] in parsed)


def test_a_tiny_corpus_saves_and_loads_with_an_empty_validation_split(tmp_path):
    dd = build(REPORTS, tmp_path / "dd", load_taxonomy(), validation=0.0, progress=False)
    assert len(dd["validation"]) == 0 and len(dd["train"]) > 0
    again = load(tmp_path / "dd")
    assert len(again["validation"]) == 0 and again["train"]["text"] == dd["train"]["text"]
    assert stats(again)["validation"]["paragraphs"] == 0
    done = subprocess.run([sys.executable, "-m", "fazhi.cli", "corpus", "stats", str(tmp_path / "dd")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_validation_sources_are_the_validation_split_and_never_train(tmp_path):
    dev = sorted((ANNOTATED / "dev").glob("*.jsonl"))[:3]
    dd = build([REPORTS[0], *sorted((ANNOTATED / "train").glob("*.jsonl"))[:2]], tmp_path / "dd", load_taxonomy(),
               validation_sources=dev, progress=False)
    assert set(dd["validation"]["doc_id"]) == {f"human/{p.stem}" for p in dev}
    assert not set(dd["train"]["doc_id"]) & set(dd["validation"]["doc_id"])
    assert {s.split(":")[0] for s in dd["train"]["label_source"]} == {"report", "human"}
    with pytest.raises(FazhiError, match="also training sources"):
        build([dev[0]], tmp_path / "bad", load_taxonomy(), validation_sources=[dev[0]], progress=False)


def test_swapped_contexts_keep_the_label_and_take_the_other_labels_headings():
    from fazhi.training.train import swapped_contexts

    rows = [{"text": f"t{i}", "kind": "body", "shortcoming": i % 4 == 0, "heading_path": [f"h{i % 4 == 0}-{i}"]}
            for i in range(400)] + [{"text": "h", "kind": "heading", "shortcoming": False, "heading_path": []}]
    swaps = swapped_contexts(rows, 0.5, seed=1)
    assert 150 < len(swaps) < 250 and all(s["swapped"] and s["kind"] == "body" for s in swaps)
    original = {r["text"]: r for r in rows}
    for s in swaps:
        assert s["shortcoming"] == original[s["text"]]["shortcoming"]  # the label is the paragraph's own
        assert s["heading_path"][0].startswith(f"h{not s['shortcoming']}")  # headings of the other label
    assert swapped_contexts(rows, 0.0, seed=1) == [] and swapped_contexts(rows, 0.5, seed=1) == swaps


def test_ece_on_known_examples():
    from fazhi.training.evaluate import ece

    assert ece(np.full(10, 0.9), np.array([1] * 9 + [0])) == pytest.approx(0.0)
    assert ece(np.full(10, 0.9), np.array([1] * 5 + [0] * 5)) == pytest.approx(0.4)
    # two bins, half the lines each: |0.2 - 0| and |0.8 - 1| → 0.2
    assert ece(np.array([0.2, 0.2, 0.8, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.2)
    assert ece(np.array([1.0]), np.array([1])) == pytest.approx(0.0)  # 1.0 falls in the last bin


def test_ece_of_a_perfectly_calibrated_model_on_known_examples():
    from fazhi.training.evaluate import ece, ece_if_calibrated

    # sure and right every time: no sampling noise
    assert ece_if_calibrated(np.ones(50)) == {"mean": 0.0, "interval": [0.0, 0.0]}
    # four lines at 0.5, one bin: E|k/4 - 1/2| for k ~ Binomial(4, 1/2) = 3/16
    floor = ece_if_calibrated(np.full(4, 0.5), draws=20000)
    assert floor["mean"] == pytest.approx(3 / 16, abs=0.01) and floor["interval"] == [0.0, 0.5]
    # the range holds the ECE of outcomes actually drawn from the confidences, and shrinks with n
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.4, 1.0, 300)
    lo, hi = ece_if_calibrated(conf)["interval"]
    assert lo <= ece(conf, rng.random(300) < conf) <= hi
    assert ece_if_calibrated(np.tile(conf, 20))["mean"] < ece_if_calibrated(conf)["mean"] / 3


def test_temperature_fit_recovers_overconfidence_and_keeps_the_argmax():
    from fazhi.models.calibration import Calibration, fit_temperature

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(4000, 5))
    true = np.exp(logits / 3) / np.exp(logits / 3).sum(-1, keepdims=True)  # the truth is 3x softer
    labels = np.array([rng.choice(5, p=p) for p in true])
    t = fit_temperature(logits, labels)
    assert 2.6 < t < 3.4
    probs, _ = Calibration(t, 1.0, 0.5).probabilities(logits, np.zeros((4000, 2)))
    assert (probs.argmax(-1) == logits.argmax(-1)).all()


@pytest.mark.slow
def test_calibration_is_fitted_stored_and_applied_by_both_backends(tiny_model, tmp_path, monkeypatch):
    from fazhi.models.bert import BertClassifier
    from fazhi.models.calibration import Calibration
    from fazhi.models.meta import ModelMeta
    from fazhi.training.export import export_onnx
    from fazhi.training.calibrate import calibrate

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model[0], model_dir)
    raw = BertClassifier.load(model_dir).predict(TEXTS)
    before = (model_dir / "fazhi.json").read_text()
    with pytest.raises(FazhiError, match="no such directory"):
        calibrate(model_dir, GOLD_DIR, [tmp_path / "missing"])
    assert (model_dir / "fazhi.json").read_text() == before  # nothing stored before the error
    record = calibrate(model_dir, GOLD_DIR)
    cal = ModelMeta.read(model_dir).get_calibration()
    assert cal.to_dict() == record["calibration"] and cal != Calibration()
    assert record["cross_fitted"] is not None and record["inputs"] > 60
    # a sharper temperature for the test, so that both heads visibly move
    meta = json.loads((model_dir / "fazhi.json").read_text())
    meta["calibration"] = {"category_temperature": 0.25, "shortcoming_temperature": 4.0, "shortcoming_threshold": 0.3}
    (model_dir / "fazhi.json").write_text(json.dumps(meta))
    torch_preds = BertClassifier.load(model_dir).predict(TEXTS)
    assert [p.category for p in torch_preds] == [p.category for p in raw]
    assert max(p.scores[p.category] for p in torch_preds) > max(p.scores[p.category] for p in raw)
    assert all(p.shortcoming == (p.shortcoming_score >= 0.3) for p in torch_preds)
    export_onnx(model_dir, quantize="none")
    onnx_preds = BertClassifier.load(model_dir, "onnx").predict(TEXTS)
    for a, b in zip(torch_preds, onnx_preds):
        assert a.category == b.category and a.shortcoming == b.shortcoming
        assert abs(a.shortcoming_score - b.shortcoming_score) < 1e-3
        assert max(abs(a.scores[k] - b.scores[k]) for k in a.scores) < 1e-3


def test_evaluate_lists_exactly_the_wrong_lines_and_bounds_its_figures(tmp_path):
    from fazhi.training.evaluate import evaluate

    model = load_classifier("rules")
    result = evaluate(model, GOLD_DIR, bootstrap_samples=200, errors=True)
    body = [(name, r) for name, rows in load_gold(GOLD_DIR).items() for r in rows if r["kind"] == "body"]
    preds = model.predict([r["text"] for _, r in body])
    wrong = {(name, r["i"]) for (name, r), p in zip(body, preds)
             if p.category != r["category"] or p.shortcoming != r["shortcoming"]}
    listed = {(e["file"], e["line"]) for e in result["errors"] if e["block"] == "paragraph"}
    assert listed == wrong and wrong
    for e in result["errors"]:
        assert e["gold"] != e["predicted"] and e["text"]
    doc = result["document"]
    doc_wrong = [e for e in result["errors"] if e["block"] == "document"]
    assert sum(e["gold"]["category"] != e["predicted"]["category"] for e in doc_wrong) == \
        round(doc["n"] * (1 - doc["category_accuracy"]))
    for block in ("paragraph", "document"):
        r = result[block]
        for key, (lo, hi) in r["interval"].items():
            assert lo <= r[key] <= hi or key.endswith("_ece"), key  # ECE of a resample is biased upward
        assert r["interval"]["category_macro_f1"][1] - r["interval"]["category_macro_f1"][0] > 0.01
        assert 0 <= r["category_ece"] <= 1 and 0 <= r["shortcoming_ece"] <= 1

    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "fazhi.cli", "evaluate", "--gold", str(GOLD_DIR), "--model", "rules",
                           "--errors", "--report", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f"## Wrong lines ({len(result['errors'])})" in md and "ECE category" in md
    assert (out / "reliability_document.png").stat().st_size > 1000
    bad = subprocess.run([sys.executable, "-m", "fazhi.cli", "evaluate", "--gold", str(GOLD_DIR), "--model", "rules",
                          "--bootstrap", "-1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--bootstrap" in bad.stderr


def test_evaluate_scores_the_parsers_line_kinds(tmp_path):
    from fazhi.training.evaluate import evaluate

    lines = [("meta", "关于2023年法治政府建设情况的报告"), ("body", "现将有关情况报告如下："), ("heading", "一、主要工作"),
             ("body", "今年以来，我局坚持依法行政，全面推进法治政府建设，取得明显成效。"),
             ("heading", "坚持高位推动 法治政府建设责任不断强化"),  # unnumbered: the parser calls it body
             ("heading", "二、存在的不足"), ("body", "执法力量比较薄弱，执法人员紧缺。"), ("meta", "版权所有：某某县人民政府")]
    gold = tmp_path / "gold"
    gold.mkdir()
    (gold / "doc.jsonl").write_text("".join(json.dumps(
        {"doc": "doc", "i": i, "text": t, "kind": k, "category": "none" if k == "meta" else "other",
         "shortcoming": i == 6}, ensure_ascii=False) + "\n" for i, (k, t) in enumerate(lines)), encoding="utf-8")
    parse = evaluate(load_classifier("rules"), gold, errors=True)["parse"]
    assert parse["confusion"] == {"labels": ["heading", "body", "meta"], "matrix": [[2, 1, 0], [0, 3, 0], [0, 0, 2]]}
    assert (parse["n"], parse["accuracy"], parse["body_kept"], parse["meta_kept_out"]) == (8, 0.875, 1.0, 1.0)
    assert [(e["line"], e["gold"], e["parsed"]) for e in parse["errors"]] == [(4, "heading", "body")]
    assert "errors" not in evaluate(load_classifier("rules"), gold)["parse"]
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "fazhi.cli", "evaluate", "--gold", str(gold), "--model", "rules",
                           "--errors", "--report", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "kind accuracy **0.875**" in md and "### Lines of another kind (1)" in md


def test_cross_validation_scores_each_human_document_once_by_a_model_that_never_saw_it(tmp_path):
    from fazhi.training.crossval import crossval, human_folds
    from fazhi.training.train import TrainArgs

    human_files = sorted((ANNOTATED / "train").glob("*.jsonl"))[:6]
    dd = build([REPORTS[0], *human_files], tmp_path / "dd", load_taxonomy(), validation=0.0, progress=False)
    rows = list(dd["train"])
    human = [r for r in rows if r["label_source"].startswith("human")]
    args = TrainArgs(data=str(tmp_path / "dd"), out=str(tmp_path / "cv"), model_type="tfidf", folds=3, bootstrap=100,
                     progress=False)
    result = crossval(args)

    folds = human_folds([r["doc_id"] for r in human], 3, args.seed)
    assert set().union(*folds) == {r["doc_id"] for r in human} and sum(map(len, folds)) == 6
    body = [r for r in human if r["kind"] == "body"]
    assert result["documents"] == 6 and result["paragraph"]["n"] == result["document"]["n"] == len(body)
    for fold, held in zip(result["per_fold"], folds):
        # every row but the held-out documents' trained the fold's model, and only those are scored
        assert fold["train_examples"] == sum(r["doc_id"] not in held for r in rows)
        assert fold["document"]["n"] == sum(r["doc_id"] in held for r in body)
        assert load_classifier(str(tmp_path / "cv" / f"fold-{fold['fold']}")).name == "tfidf"
    lo, hi = result["document"]["intervals"]["category_macro_f1"]
    assert lo <= result["document"]["category_macro_f1"] <= hi
    assert json.loads((tmp_path / "cv" / "crossval.json").read_text(encoding="utf-8")) == result

    with pytest.raises(FazhiError, match="7 folds need 7 human documents"):
        crossval(TrainArgs(data=args.data, out=str(tmp_path / "cv7"), model_type="tfidf", folds=7, progress=False))
    command = [sys.executable, "-m", "fazhi.cli", "train", "--data", args.data, "--out", str(tmp_path / "x"),
               "--model-type", "tfidf", "--no-progress", "--bootstrap", "50", "--folds"]
    done = subprocess.run([*command, "1"], capture_output=True, text=True)
    assert done.returncode != 0 and "--folds: expected 2 folds or more, got 1" in done.stderr
    done = subprocess.run([*command, "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["folds"] == 2  # stdout holds the result alone
    done = subprocess.run([*command, "2", "--bootstrap", "0"], capture_output=True, text=True)
    assert done.returncode != 0 and "--bootstrap: must be positive, got 0" in done.stderr


def test_a_paired_comparison_gives_the_difference_and_its_interval(tiny_tfidf, tmp_path):
    from fazhi.training.evaluate import evaluate

    rules, tfidf = load_classifier("rules"), load_classifier(str(tiny_tfidf))
    same = evaluate(rules, GOLD_DIR, bootstrap_samples=50, against=rules)["against"]
    for block in ("paragraph", "document"):
        assert set(same[block]["difference"].values()) == {0.0}
        assert all(iv == [0.0, 0.0] for iv in same[block]["difference_interval"].values())
    result = evaluate(rules, GOLD_DIR, bootstrap_samples=200, against=tfidf)
    alone = evaluate(tfidf, GOLD_DIR)
    for block in ("paragraph", "document"):
        theirs = result["against"][block]
        assert theirs["category_macro_f1"] == alone[block]["category_macro_f1"]
        diff = theirs["difference"]["category_macro_f1"]
        assert diff == round(result[block]["category_macro_f1"] - alone[block]["category_macro_f1"], 4)
        lo, hi = theirs["difference_interval"]["category_macro_f1"]
        assert lo <= diff <= hi and lo < hi
    assert "against" not in evaluate(rules, GOLD_DIR)

    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "fazhi.cli", "evaluate", "--gold", str(GOLD_DIR), "--model", "rules",
                           "--against", str(tiny_tfidf), "--bootstrap", "20", "--report", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["against"]["model"] == "tfidf"
    assert "Against `tfidf`" in (out / "report.md").read_text(encoding="utf-8")


def test_the_shortcoming_head_never_maxes_over_the_headings():
    import torch

    from fazhi.models.bert import ShortcomingHead

    torch.manual_seed(0)
    head = ShortcomingHead(4, sep_id=7)
    states = torch.randn(2, 6, 4)
    states[:, 1] = 50 * head.score.weight[0]  # token 1 (a heading's) would score highest
    ids = torch.tensor([[0, 5, 7, 8, 9, 2], [0, 5, 6, 8, 9, 2]])  # row 0 has headings, a separator at 2
    mask = torch.ones(2, 6, dtype=torch.long)
    token = head.score(states).squeeze(-1)
    logits = head(states, mask, ids)
    assert torch.allclose(logits[0, 1], token[0, 3:].max())  # only the paragraph after the separator
    assert torch.allclose(logits[1, 1], token[1].max())  # no separator: every token
    assert torch.allclose(head(states, mask)[0, 1], token[0].max())  # without ids, as heads saved before


@pytest.mark.slow
def test_trainer_fine_tunes_a_tiny_xlm_roberta_that_the_pipeline_loads(corpus, tmp_path):
    from transformers import XLMRobertaConfig, XLMRobertaModel, pipeline

    from conftest import BASE
    from fazhi.training.train import TrainArgs, train

    base = tmp_path / "xlmr"
    base.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(BASE / name, base / name)
    XLMRobertaModel(XLMRobertaConfig(vocab_size=28679, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=130, pad_token_id=1)
                    ).save_pretrained(base)
    corpus.save_to_disk(str(tmp_path / "dd"))
    out = tmp_path / "m"
    summary = train(TrainArgs(data=str(tmp_path / "dd"), base_model=str(base), out=str(out), epochs=3, batch_size=16,
                              lr=1e-2, max_length=64, lora_r=0, progress=False))
    assert summary["train_losses"][-1] < summary["train_losses"][0]
    assert json.loads((out / "config.json").read_text())["model_type"] == "xlm-roberta"
    label = pipeline("text-classification", model=str(out))(TEXTS[0])[0]["label"]
    assert label == load_classifier(out).predict(TEXTS[:1])[0].category
