"""Typed request and response bodies of the HTTP API (they make its OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from fazhi.models.base import check_unicode

HEADINGS_MAX, HEADING_MAX_CHARS = 16, 500  # the model reads the last two headings; deeper outlines are not reports
Text = Annotated[str, StringConstraints(min_length=1), AfterValidator(check_unicode)]
Heading = Annotated[str, StringConstraints(max_length=HEADING_MAX_CHARS), AfterValidator(check_unicode)]
# the years a report may carry; the paragraph filter takes the same range, so no query reaches SQLite unbounded
YEAR_MIN, YEAR_MAX = 1949, 2100
TITLE_CHARS, REGION_CHARS = 500, 100  # a title or region stored with a report, characters


class ParagraphIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Text
    heading_path: list[Heading] | None = Field(None, max_length=HEADINGS_MAX,
                                               description="Headings above the paragraph, outermost first")


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"paragraphs": [
        "全年收到行政复议申请64件，审结55件，综合纠错率21.8%。",
        {"text": "一是部分乡镇综合执法队伍专业力量不足。", "heading_path": ["二、存在的不足"]}]}]})
    paragraphs: list[Text | ParagraphIn] = Field(..., min_length=1, description="Paragraph texts or {text, heading_path}")


class Labels(BaseModel):
    category: str
    scores: dict[str, float] = Field(..., description="Probability of every category (sums to 1)")
    shortcoming: bool
    shortcoming_score: float = Field(..., ge=0, le=1)


class ClassifyResult(Labels):
    text: str


class ClassifyResponse(BaseModel):
    results: list[ClassifyResult]
    model: str


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "text": "青溪县2023年法治政府建设情况报告\n一、主要工作\n全年收到行政复议申请64件，审结55件。",
        "title": "青溪县2023年法治政府建设情况报告", "region": "青溪县", "year": 2023}]})
    text: Text
    title: str | None = Field(None, max_length=TITLE_CHARS)
    region: str | None = Field(None, max_length=REGION_CHARS)
    year: int | None = Field(None, ge=YEAR_MIN, le=YEAR_MAX)


class Correction(BaseModel):
    """A reviewer's labels for a paragraph (the fields they changed), who and when."""

    category: str | None = None
    shortcoming: bool | None = None
    by: str
    at: str


class TaggedParagraph(Labels):
    id: str
    kind: str
    level: int
    heading_path: list[str]
    text: str
    correction: Correction | None = Field(None, description="A reviewer's labels; the model's stay in the fields above")


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"category": "enforcement",
                                                                               "shortcoming": True}]})
    category: str | None = Field(None, description="A category id")
    shortcoming: bool | None = None


class CorrectedParagraph(TaggedParagraph):
    report_id: str


class CorrectionItem(BaseModel):
    report_id: str
    paragraph_id: str
    field: str
    old: str
    new: str
    reviewer: str
    created_at: str


class CorrectionList(BaseModel):
    items: list[CorrectionItem]
    count: int


class ShortcomingItem(BaseModel):
    text: str
    category: str
    paragraph_id: str


class FigureItem(BaseModel):
    value: float
    unit: str
    what: str
    category: str
    paragraph_id: str


class DigestOut(BaseModel):
    summary: str
    coverage: dict[str, float]
    missing_categories: list[str]
    shortcomings: list[ShortcomingItem]
    figures: list[FigureItem]
    highlights: dict[str, list[str]]


class ReportSummary(BaseModel):
    id: str
    title: str | None
    region: str | None
    year: int | None
    source: str | None
    model: str
    created_at: str


class ReportListItem(ReportSummary):
    paragraphs: int


class ReportList(BaseModel):
    items: list[ReportListItem]
    next_cursor: str | None


class ReportOut(ReportSummary):
    meta: dict[str, Any]
    digest: DigestOut | None
    paragraphs: list[TaggedParagraph]


class ParagraphHit(TaggedParagraph):
    report_id: str
    title: str | None
    region: str | None
    year: int | None


class ParagraphPage(BaseModel):
    items: list[ParagraphHit]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; null on the last page")


class ModelInfo(BaseModel):
    name: str
    labels: list[str]
    metrics: dict[str, Any] = Field(default_factory=dict)
    card: dict[str, Any] = Field(default_factory=dict, description="The model card's YAML front-matter")
    batching: bool
    model_calls: int


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody
