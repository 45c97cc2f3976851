"""Command-line edges: every bad input is one line on stderr, exit 2, and no partial output."""

from __future__ import annotations

import subprocess
import sys

import pytest


def classify(path):
    return subprocess.run([sys.executable, "-m", "fazhi.cli", "classify", "--model", "rules", "--input", str(path)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("second_line, problem", [
    ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
    ('["依法行政"]', "expected a JSON object with a 'text' field"),
    ('{"heading_path": []}', "expected a JSON object with a 'text' field"),
    ('{"text": ""}', "'text' must be a non-empty string"),
    ('{"text": 3}', "'text' must be a non-empty string"),
    ('{"text": "依法"', "not valid JSON"),
])
def test_classify_names_the_bad_line(tmp_path, second_line, problem):
    bad = tmp_path / "in.jsonl"
    bad.write_text('{"text": "依法行政"}\n' + second_line + "\n", encoding="utf-8")
    result = classify(bad)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"fazhi: error: {bad}:2: {problem}") and result.stderr.count("\n") == 1


def test_classify_names_a_line_that_is_not_utf8(tmp_path):
    bad = tmp_path / "gbk.jsonl"
    bad.write_bytes('{"text": "依法行政"}\n'.encode() + '{"text": "依法行政"}\n'.encode("gbk"))
    result = classify(bad)
    assert result.returncode == 2 and result.stderr.strip() == f"fazhi: error: {bad}:2: not UTF-8 text"


def test_classify_answers_every_line_in_order(tmp_path):
    good = tmp_path / "in.jsonl"
    good.write_text('{"text": "全年办理行政复议案件12件"}\n\n{"text": "存在执法不规范的问题", "heading_path": ["二、存在的问题"]}\n',
                    encoding="utf-8")
    result = classify(good)
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and len(lines) == 2 and "行政复议" in lines[0] and "执法不规范" in lines[1]


def test_every_option_help_reads_as_printed():
    """Click prints help text verbatim: a doubled percent sign (argparse's escape) would show as "%%"."""
    import click
    import typer.main

    from fazhi.cli import app

    def walk(command: click.Command):
        yield command
        for sub in getattr(command, "commands", {}).values():
            yield from walk(sub)

    helps = [(command.name, param.name, param.help) for command in walk(typer.main.get_command(app))
             for param in command.params if getattr(param, "help", None)]
    assert len(helps) > 50
    assert [h for h in helps if "%%" in h[2]] == []
