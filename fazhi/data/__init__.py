"""Data files the package ships: the label scheme, the sentence bank and a sample report."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
TAXONOMY = DATA_DIR / "taxonomy.yaml"
BANK = DATA_DIR / "bank.yaml"
SAMPLE_REPORT = DATA_DIR / "sample_report.txt"
