"""``fazhi.json``, the metadata every saved model and adapter directory carries: one typed
schema, read and written only here; and the names of a model directory's files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fazhi.errors import FazhiError
from fazhi.models.calibration import Blend, Calibration

META_FILE = "fazhi.json"
SC_HEAD = "shortcoming_head.safetensors"  # the shortcoming head beside a BERT model's weights


class ModelMeta(BaseModel):
    """What a model directory says about itself. Fields other tools add are kept as they are."""

    model_config = ConfigDict(extra="allow")

    type: Literal["bert", "tfidf"] | None = None
    name: str | None = None
    labels: list[str] | None = Field(None, description="category ids in the order of the model's outputs")
    max_length: int = Field(256, ge=8, description="tokens per input, context included")
    calibration: dict[str, float] = Field(default_factory=dict, description="Calibration fields; empty: identity")
    metrics: dict[str, Any] = Field(default_factory=dict, description="figures recorded by `fazhi models card`")
    base_model: str | None = None
    adapter: str | None = None
    blend: Blend | None = Field(None, description="weight and temperature of a model that blends its categories "
                                                  "with the TF-IDF model in its tfidf/")
    teacher: str | None = Field(None, description="the model directory a distilled student learned from")
    training: dict[str, Any] | None = None

    @classmethod
    def read(cls, directory: str | Path) -> "ModelMeta":
        """The metadata of ``directory`` (defaults where it has no fazhi.json)."""
        path = Path(directory) / META_FILE
        if not path.is_file():
            return cls()
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(map(str, first["loc"])) or "top level"
            raise FazhiError(str(path), f"not a valid {META_FILE}: {where}: {first['msg']}") from None
        except ValueError as err:
            raise FazhiError(str(path), f"not a valid {META_FILE}: {str(err).splitlines()[0]}") from None

    def write(self, directory: str | Path) -> Path:
        """Write ``directory/fazhi.json`` whole or not at all (a temporary file renamed over it)."""
        path = Path(directory) / META_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    def get_calibration(self) -> Calibration:
        """The stored calibration (the identity where there is none)."""
        return Calibration(**{k: float(v) for k, v in self.calibration.items() if k in Calibration.__dataclass_fields__})
