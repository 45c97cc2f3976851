"""Chinese sentence splitting that respects quotes, brackets and numbers."""

from __future__ import annotations

import re

_ENDS = "。！？!?；;…"
_OPEN = "《“‘（(【〔「『［["
_CLOSE = {"《": "》", "“": "”", "‘": "’", "（": "）", "(": ")", "【": "】", "〔": "〕", "「": "」", "『": "』",
          "［": "］", "[": "]"}
# closing marks that belong to the sentence they end ("……。”" stays together)
_TRAILERS = "”’）)】」』》…"
_DECIMAL = re.compile(r"\d[.．]\d")
# a quote or bracket left open longer than this is a typo, not a quotation
_MAX_QUOTE = 200


def split_sentences(text: str) -> list[str]:
    """Cut ``text`` after 。！？；… (and their ASCII forms) that are not inside 《》, “”, （）, 【】 and kin.

    A full stop between digits ("76.15%") never ends a sentence; an ellipsis "……" and the
    closing quote after a sentence end stay with that sentence. Whitespace around each
    sentence is stripped and empty pieces are dropped, so ``"".join`` of the result is the
    text without the whitespace between sentences.
    """
    sentences: list[str] = []
    stack: list[tuple[str, int]] = []  # (expected closing mark, where it opened)
    start = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if stack and i - stack[0][1] > _MAX_QUOTE:
            stack.clear()
        if ch in _OPEN:
            stack.append((_CLOSE[ch], i))
        elif stack and ch == stack[-1][0]:
            stack.pop()
        elif ch in _ENDS and not stack and not _DECIMAL.match(text, max(i - 1, 0)):
            j = i + 1
            while j < n and (text[j] in _TRAILERS or text[j] in _ENDS):
                j += 1
            sentences.append(text[start:j])
            start = i = j
            continue
        i += 1
    sentences.append(text[start:])
    return [s.strip() for s in sentences if s.strip()]
