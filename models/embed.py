"""Sentence embeddings from a local E5-family encoder: mean-pooled, L2-normalised vectors.

E5 models are trained for exactly this use (inputs prefixed ``"query: "``, mean pooling over
real tokens); the base encoder `make setup` imports (``build/e5-base``) is one. Used where
text must be matched by meaning rather than wording (two years' admitted shortcomings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from fazhi.errors import FazhiError

PREFIX = "query: "


class Embedder:
    """``encode(texts) -> (n, d)`` float32 unit vectors; cosine similarity is their dot product."""

    def __init__(self, path: str | Path, max_length: int = 128, batch_size: int = 32):
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FazhiError(str(path), "no sentence encoder here (run `make setup`, or "
                                        "`fazhi models import-e5 --out build/e5-base`; or set FAZHI_EMBEDDER)")
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        try:  # E5 models are BERT or XLM-R: their pooler is unused here and not in the checkpoint
            self.model = AutoModel.from_pretrained(path, add_pooling_layer=False).eval()
        except TypeError:
            self.model = AutoModel.from_pretrained(path).eval()
        self.max_length, self.batch_size = max_length, batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        torch = self.torch
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            part = [PREFIX + t for t in texts[start:start + self.batch_size]]
            enc = self.tokenizer(part, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                states = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            vectors = (states * mask).sum(1) / mask.sum(1)
            out[start:start + len(part)] = torch.nn.functional.normalize(vectors, dim=-1).numpy()
        return out
