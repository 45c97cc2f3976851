"""Every ``FAZHI_*`` environment variable, read and validated in one place (pydantic-settings).

``Settings()`` reads the environment each time it is built, so a changed variable takes
effect for the next command or server; command-line flags override fields with
``Settings(field=value)``. A bad value is a :class:`~fazhi.errors.FazhiError` naming the
variable (``FAZHI_MAX_BYTES: expected an integer, got 'x'``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fazhi.errors import FazhiError

PREFIX = "FAZHI_"
# where `make setup` (and `fazhi models merge`) put the merged release model, relative to the
# working directory: a checkout's build/ folder
RELEASE_MODEL = Path("build") / "release-model"
TFIDF_MODEL = Path("build") / "tfidf"


class Settings(BaseSettings):
    """The configuration of the CLI and the server. Field ``x`` is variable ``FAZHI_X``."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", validate_default=True)

    model: str | None = Field(None, description="rules, tfidf or a model directory (`-`: build/release-model)")
    backend: Literal["auto", "onnx", "int8", "float32", "torch"] = Field("auto", description=(
        "BERT runtime: auto (ONNX where exported, float32 on CPUs without int8 dot products), "
        "onnx, int8 (no re-scoring), float32 or torch"))
    embedder: Path = Field(Path("build") / "e5-base", description="E5 sentence encoder of `fazhi compare`")
    threads: int | None = Field(None, ge=1, description="ONNX Runtime threads (`-`: every core)")
    db: str = Field("fazhi.db", description="stored reports: SQLite file or `postgresql://user@host/db`")
    db_busy_timeout: float = Field(5.0, gt=0, description="seconds a write waits for another writer, then 503")
    api_keys: SecretStr = Field(SecretStr(""), description="API keys, comma-separated")
    api_key_file: Path | None = Field(None, description="file of key hashes (`fazhi api-key new`)")
    protect_reads: bool = Field(False, description="read endpoints need a key too")
    batching: bool = Field(True, description="merge concurrent /v1/classify requests")
    max_bytes: int = Field(20 * 1024 * 1024, ge=1, description="largest file or request body, bytes")
    max_inflated_bytes: int = Field(64 * 1024 * 1024, ge=1, description="largest decompressed .docx/.pdf, bytes")
    max_report_paragraphs: int = Field(5000, ge=1, description="paragraphs per report")
    ocr: Literal["auto", "force", "off"] = Field("auto", description="OCR: auto (pages without a text layer), "
                                                                       "force, off")
    max_ocr_pages: int = Field(30, ge=1, description="pages per report read by OCR (~7 s each on 2 cores)")
    max_paragraphs: int = Field(256, ge=1, description="paragraphs per /v1/classify request")
    max_paragraph_chars: int = Field(5000, ge=1, description="characters per /v1/classify paragraph")

    def model_path(self) -> Path | None:
        """The directory ``model`` names (the release model by default); None for ``rules``."""
        if self.model in (None, "", "bert"):
            return RELEASE_MODEL
        if self.model == "rules":
            return None
        return TFIDF_MODEL if self.model == "tfidf" else Path(self.model)

    @field_validator("db", mode="before")
    @classmethod
    def _path_or_url(cls, value):
        # a path object stands for its file; a URL stays text (Path("postgresql://h/db") would lose a slash)
        return os.fspath(value) if isinstance(value, os.PathLike) else value


def settings(**overrides) -> Settings:
    """:class:`Settings` from the environment, with the non-None ``overrides`` (command-line flags) applied."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0]) if first.get("loc") else "settings"
        raise FazhiError(PREFIX + field.upper(), f"{first['msg']} (got {first.get('input')!r})") from None


def table() -> str:
    """The Markdown table of every variable, default and meaning (the README's)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default.get_secret_value() if isinstance(field.default, SecretStr) else field.default
        rows.append(f"| `{PREFIX}{name.upper()}` | `{default if default not in (None, '') else '-'}` "
                    f"| {field.description} |")
    return "\n".join(rows)
