"""Domain-adaptive pretraining and distillation on tiny models: losses fall, checkpoints load,
a pretrain resumes, a student has the layers asked for, loads, predicts, exports to ONNX and is
benchmarked against its teacher; bad input is one line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import GOLD_DIR, REPORTS, SAMPLE, TEXTS
from fazhi.cli import app
from fazhi.errors import FazhiError
from fazhi.models.meta import ModelMeta
from fazhi.models.registry import load_classifier

pytestmark = pytest.mark.slow

# a few hundred distinct lines of government prose: the sample report and 12 synthetic ones
N_SYNTHETIC = 12


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """A folder of unlabeled report files."""
    from fazhi.corpora.synthesis import write_reports

    root = tmp_path_factory.mktemp("texts")
    write_reports(root, N_SYNTHETIC, seed=3)
    (root / SAMPLE.name).write_text(SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def corpus_dir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("distill-corpus") / "dd"
    corpus.save_to_disk(str(out))
    return out


@pytest.fixture(scope="module")
def pretrained(tiny_base, texts, tmp_path_factory):
    from fazhi.training.pretrain import PretrainArgs, pretrain

    out = tmp_path_factory.mktemp("pretrain") / "p"
    args = PretrainArgs(base_model=str(tiny_base), corpus=[str(texts)], out=str(out), max_steps=8, lr=5e-3,
                        batch_size=16, save_steps=4, logging_steps=2, max_examples=300, eval_examples=32,
                        progress=False)
    return out, args, pretrain(args)


@pytest.fixture(scope="module")
def student(tiny_model, corpus_dir, texts, tmp_path_factory):
    from fazhi.training.distill import DistillArgs, distill

    out = tmp_path_factory.mktemp("student") / "s"
    summary = distill(DistillArgs(teacher=str(tiny_model[0]), out=str(out), layers=1, data=str(corpus_dir),
                                  unlabeled=[str(texts)], max_per_source=200, epochs=3, batch_size=16, lr=5e-3,
                                  eval_steps=4, patience=10, progress=False))
    return out, summary


def test_pretraining_lowers_the_masked_lm_loss_and_saves_a_stock_encoder(pretrained, tiny_base):
    from transformers import AutoModel

    out, _, summary = pretrained
    assert summary["steps"] == 8 and summary["tokens_seen"] > 0 and summary["tokens_per_s"] > 0
    assert summary["train_loss_last"] < summary["train_loss_first"]
    assert summary["eval_loss_last"] < summary["eval_loss_first"]  # held-out paragraphs too
    assert json.loads((out / "pretrain.json").read_text())["steps"] == 8
    assert (out / "loss.png").read_bytes().startswith(b"\x89PNG")
    encoder = AutoModel.from_pretrained(out)
    assert type(encoder).__name__ == "BertModel" and encoder.pooler is not None  # the base's architecture
    assert encoder.config.num_hidden_layers == 2 and (out / "tokenizer.json").is_file()
    base = AutoModel.from_pretrained(tiny_base)
    changed = encoder.encoder.layer[0].attention.self.query.weight - base.encoder.layer[0].attention.self.query.weight
    assert changed.abs().max() > 0


def test_a_pretrained_encoder_is_a_base_model_for_training(pretrained, corpus_dir, tmp_path):
    from fazhi.training.train import TrainArgs, train

    out = tmp_path / "m"
    train(TrainArgs(data=str(corpus_dir), base_model=str(pretrained[0]), out=str(out), epochs=1, batch_size=16,
                    lr=1e-2, max_length=64, lora_r=0, max_examples=64, progress=False))
    assert len(load_classifier(out, "torch").predict(TEXTS)) == len(TEXTS)


def test_pretraining_resumes_from_its_last_checkpoint(pretrained):
    from fazhi.training.pretrain import last_checkpoint, pretrain

    out, args, first = pretrained
    assert last_checkpoint(out).name == "checkpoint-8"
    args.max_steps, args.resume = 12, True
    summary = pretrain(args)
    assert summary["resumed_from"].endswith("checkpoint-8") and summary["steps"] == 12
    assert summary["tokens_seen"] > first["tokens_seen"]
    assert summary["eval_loss_first"] == first["eval_loss_first"]  # the run's history goes on
    assert last_checkpoint(out).name == "checkpoint-12"


def test_pretraining_rejects_bad_input(tiny_base, texts, tmp_path):
    from fazhi.training.pretrain import PretrainArgs, pretrain

    with pytest.raises(FazhiError, match="no such file"):
        pretrain(PretrainArgs(base_model=str(tiny_base), corpus=[str(tmp_path / "missing")], out=str(tmp_path / "o")))
    with pytest.raises(FazhiError, match="no checkpoint"):
        pretrain(PretrainArgs(base_model=str(tiny_base), corpus=[str(texts)], out=str(tmp_path / "o"), resume=True))
    with pytest.raises(FazhiError, match="config.json"):
        pretrain(PretrainArgs(base_model=str(tmp_path), corpus=[str(texts)], out=str(tmp_path / "o"), max_steps=1))
    with pytest.raises(FazhiError, match="--mlm-probability"):
        PretrainArgs(base_model=str(tiny_base), corpus=[str(texts)], out="o", mlm_probability=1.5)


def test_a_tokenizer_without_a_mask_token_gets_one(tiny_base, texts, tmp_path):
    import shutil

    from transformers import AutoModel, AutoTokenizer

    from fazhi.training.pretrain import PretrainArgs, pretrain

    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("mask_token")  # as build/e5-base, whose tokenizer was cut for classification
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    assert AutoTokenizer.from_pretrained(base).mask_token is None
    out = tmp_path / "p"
    pretrain(PretrainArgs(base_model=str(base), corpus=[str(texts)], out=str(out), max_steps=2, batch_size=8,
                          max_examples=40, eval_examples=0, progress=False))
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.mask_token == "<mask>"
    assert AutoModel.from_pretrained(out).get_input_embeddings().num_embeddings >= len(tokenizer)


def test_a_time_budget_stops_pretraining_with_a_checkpoint(tiny_base, texts, tmp_path):
    from fazhi.training.pretrain import PretrainArgs, last_checkpoint, pretrain

    summary = pretrain(PretrainArgs(base_model=str(tiny_base), corpus=[str(texts)], out=str(tmp_path / "p"),
                                    max_steps=50, save_steps=100, batch_size=8, max_examples=80, eval_examples=0,
                                    time_budget=0.001, progress=False))
    assert summary["steps"] == 1 and last_checkpoint(tmp_path / "p").name == "checkpoint-1"


def test_kept_layers_spread_from_first_to_last():
    from fazhi.training.distill import kept_layers

    assert kept_layers(12, 4) == [0, 4, 7, 11]
    assert kept_layers(12, 6) == [0, 2, 4, 7, 9, 11]
    assert kept_layers(2, 1) == [1]
    for bad in (0, 12, 13):
        with pytest.raises(FazhiError, match="--layers"):
            kept_layers(12, bad)


def test_distillation_lowers_its_loss_and_saves_a_loadable_student(student, tiny_model):
    from transformers import AutoConfig

    out, summary = student
    losses = summary["train_losses"]
    third = len(losses) // 3  # per-batch losses are noisy: compare the first and last thirds of the run
    assert third >= 2 and sum(losses[-third:]) < sum(losses[:third]), losses
    assert summary["kept_layers"] == [1] and summary["unlabeled_paragraphs"] > 50
    assert AutoConfig.from_pretrained(out).num_hidden_layers == 1
    meta = ModelMeta.read(out)
    assert meta.teacher == str(tiny_model[0]) and meta.labels == ModelMeta.read(tiny_model[0]).labels
    preds = load_classifier(out, "torch").predict(TEXTS, [["一、依法全面履行政府职能"], None, None])
    assert len(preds) == 3 and all(abs(sum(p.scores.values()) - 1) < 1e-3 for p in preds)
    assert (out / "teacher_logits.npz").is_file()


def test_the_student_exports_to_onnx_with_the_same_labels(student, tmp_path):
    import shutil

    from fazhi.training.export import export_onnx

    model_dir = tmp_path / "s"
    shutil.copytree(student[0], model_dir)
    export_onnx(model_dir, quantize="none")
    fast, exact = load_classifier(model_dir, "onnx"), load_classifier(model_dir, "torch")
    assert fast.backend.startswith("onnxruntime")
    for a, b in zip(fast.predict(TEXTS), exact.predict(TEXTS)):
        assert a.category == b.category and abs(a.shortcoming_score - b.shortcoming_score) < 1e-3


def test_the_teachers_outputs_are_cached_for_the_same_inputs(tiny_model, tmp_path):
    from fazhi.training.distill import teacher_logits

    cache = tmp_path / "t.npz"
    cat, sc, runtime = teacher_logits(tiny_model[0], TEXTS, cache, progress=False)
    assert cat.shape == (3, 8) and sc.shape == (3,) and runtime == "torch"
    stamp = cache.stat().st_mtime_ns
    again = teacher_logits(tiny_model[0], TEXTS, cache, progress=False)
    assert cache.stat().st_mtime_ns == stamp and (again[0] == cat).all()
    teacher_logits(tiny_model[0], TEXTS[:2], cache, progress=False)  # other inputs: computed again
    assert cache.stat().st_mtime_ns != stamp


def test_distillation_rejects_bad_input(tiny_model, corpus_dir, tmp_path):
    from fazhi.training.distill import DistillArgs, distill

    teacher = str(tiny_model[0])
    with pytest.raises(FazhiError, match="--layers.*the teacher has 2 layers"):
        distill(DistillArgs(teacher=teacher, out=str(tmp_path / "s"), layers=2, data=str(corpus_dir)))
    with pytest.raises(FazhiError, match="not a model directory"):
        distill(DistillArgs(teacher=str(tmp_path), out=str(tmp_path / "s"), layers=1, data=str(corpus_dir)))
    with pytest.raises(FazhiError, match="not a corpus directory"):
        distill(DistillArgs(teacher=teacher, out=str(tmp_path / "s"), layers=1, data=str(tmp_path)))
    with pytest.raises(FazhiError, match="no such file"):
        distill(DistillArgs(teacher=teacher, out=str(tmp_path / "s"), layers=1, data=str(corpus_dir),
                            unlabeled=[str(tmp_path / "missing")]))
    with pytest.raises(FazhiError, match="--out"):
        distill(DistillArgs(teacher=teacher, out=teacher, layers=1, data=str(corpus_dir)))


def test_bench_times_the_teachers_pipeline_for_a_student(student, tiny_model):
    from fazhi.training.bench import run_bench

    r = run_bench(student[0], REPORTS[:1], GOLD_DIR, n=40, progress=False)
    assert r["teacher"] == str(tiny_model[0]) and r["teacher_pipeline_paragraphs_per_s"] > 0
    assert r["speedup_vs_teacher"] == round(r["pipeline_paragraphs_per_s"] / r["teacher_pipeline_paragraphs_per_s"], 2)
    assert 0 <= r["teacher_pipeline_macro_f1"] <= 1
    plain = run_bench(tiny_model[0], REPORTS[:1], GOLD_DIR, n=20, progress=False)
    assert "teacher_pipeline_paragraphs_per_s" not in plain  # a model without a teacher


def test_the_commands_take_their_dataclass_options(tiny_model, corpus_dir, tmp_path):
    runner = CliRunner()
    for command in ("pretrain", "distill"):
        done = runner.invoke(app, [command, "--help"])
        assert done.exit_code == 0 and "--time-budget" in done.output
    done = runner.invoke(app, ["distill", "--teacher", str(tiny_model[0]), "--out", str(tmp_path / "s"),
                               "--layers", "2", "--data", str(corpus_dir)])
    assert done.exit_code == 2 and "--layers" in done.output and "Traceback" not in done.output
    done = runner.invoke(app, ["pretrain", "--base-model", str(tmp_path), "--out", str(tmp_path / "p")])
    assert done.exit_code == 2 and "--corpus" in done.output
