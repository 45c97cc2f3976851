"""The label scheme, loaded from a YAML file and validated once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from fazhi.data import TAXONOMY
from fazhi.errors import FazhiError

DEFAULT_SCHEME = TAXONOMY


@dataclass(frozen=True)
class Category:
    id: str
    name: str
    description: str
    cues: tuple[re.Pattern[str], ...]

    def score(self, text: str) -> int:
        """Number of cue matches in ``text``."""
        return sum(len(p.findall(text)) for p in self.cues)


@dataclass(frozen=True)
class Taxonomy:
    version: int
    default: str
    categories: tuple[Category, ...]
    shortcoming_headings: tuple[re.Pattern[str], ...]
    shortcoming_text: tuple[re.Pattern[str], ...]
    source: str = field(default=str(DEFAULT_SCHEME))

    @property
    def labels(self) -> list[str]:
        return [c.id for c in self.categories]

    def names(self) -> dict[str, str]:
        return {c.id: c.name for c in self.categories}

    def scores(self, text: str) -> dict[str, int]:
        """Cue counts per category for ``text`` (categories without a match left out)."""
        return {c.id: n for c in self.categories if (n := c.score(text))}


def _compile(patterns, where: str, source: str) -> tuple[re.Pattern[str], ...]:
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise FazhiError(source, f"{where}: expected a list of regular expressions")
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as err:
            raise FazhiError(source, f"{where}: bad pattern {p!r}: {err}") from None
    return tuple(out)


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load and validate a label scheme (default: the project's own)."""
    return _load(str(Path(path).resolve()) if path else str(DEFAULT_SCHEME))


@lru_cache(maxsize=8)
def _load(source: str) -> Taxonomy:
    try:
        raw = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FazhiError(source, "label scheme file not found") from None
    except yaml.YAMLError as err:
        raise FazhiError(source, f"not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("categories"), list) or not raw["categories"]:
        raise FazhiError(source, "a label scheme needs a non-empty 'categories' list")
    categories, seen = [], set()
    for i, c in enumerate(raw["categories"]):
        if not isinstance(c, dict) or not c.get("id"):
            raise FazhiError(source, f"category #{i + 1} has no id")
        if c["id"] in seen:
            raise FazhiError(source, f"category id {c['id']!r} appears twice")
        seen.add(c["id"])
        categories.append(Category(c["id"], c.get("name", c["id"]), c.get("description", ""),
                                   _compile(c.get("cues", []), f"category {c['id']} cues", source)))
    default = raw.get("default_category", "other")
    if default not in seen:
        raise FazhiError(source, f"default_category {default!r} is not one of the categories")
    sc = raw.get("shortcoming") or {}
    return Taxonomy(
        version=int(raw.get("version", 1)), default=default, categories=tuple(categories),
        shortcoming_headings=_compile(sc.get("heading_cues", []), "shortcoming heading_cues", source),
        shortcoming_text=_compile(sc.get("text_cues", []), "shortcoming text_cues", source),
        source=source,
    )
