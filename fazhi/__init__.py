"""fazhi: read, tag, summarise and serve Chinese rule-of-law government reports."""

__version__ = "0.1.0"
