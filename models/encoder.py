"""Base encoders: trim a Unigram-tokenizer BERT to the pieces a corpus uses.

Trimming keeps the special tokens and every piece the given texts tokenize to,
renumbers them in their old order and slices the embedding rows to match, so the
encoder computes the same vectors for those texts in a fraction of the size.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable

import torch

from fazhi.errors import FazhiError


def trim_vocabulary(base_dir: str | Path, texts: Iterable[str], out_dir: str | Path,
                    dtype: torch.dtype = torch.float32) -> int:
    """Write a copy of ``base_dir`` keeping only the pieces ``texts`` use; return the new vocabulary size."""
    from tokenizers import Tokenizer
    from transformers import AutoModel

    base, out = Path(base_dir), Path(out_dir)
    tok_file = base / "tokenizer.json"
    if not tok_file.is_file():
        raise FazhiError(str(base), "no tokenizer.json: only fast Unigram tokenizers can be trimmed")
    spec = json.loads(tok_file.read_text(encoding="utf-8"))
    if spec["model"]["type"] != "Unigram":
        raise FazhiError(str(base), f"tokenizer model is {spec['model']['type']}, not Unigram")
    tokenizer = Tokenizer.from_file(str(tok_file))
    keep = {t["id"] for t in spec["added_tokens"]} | {spec["model"]["unk_id"]}
    for enc in tokenizer.encode_batch(list(texts)):
        keep.update(enc.ids)
    old_ids = sorted(keep)
    new_id = {old: new for new, old in enumerate(old_ids)}
    spec["model"]["vocab"] = [spec["model"]["vocab"][i] for i in old_ids]
    spec["model"]["unk_id"] = new_id[spec["model"]["unk_id"]]
    for t in spec["added_tokens"]:
        t["id"] = new_id[t["id"]]
    for special in (spec.get("post_processor") or {}).get("special_tokens", {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]

    model = AutoModel.from_pretrained(base)
    emb = model.get_input_embeddings().weight.data[old_ids].clone()
    model.resize_token_embeddings(len(old_ids))
    model.get_input_embeddings().weight.data.copy_(emb)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(model.config, key, None) is not None:
            setattr(model.config, key, new_id[getattr(model.config, key)])
    out.mkdir(parents=True, exist_ok=True)
    model.to(dtype).save_pretrained(out)
    (out / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (base / name).is_file():
            shutil.copy(base / name, out / name)
    return len(old_ids)
