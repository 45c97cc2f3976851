"""A CJK-capable font for matplotlib, found among the installed system fonts."""

from __future__ import annotations

from functools import lru_cache

CJK_FONTS = ("WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC",
             "AR PL UMing CN", "SimHei", "Microsoft YaHei")


@lru_cache(maxsize=1)
def use_cjk_font() -> str | None:
    """Make matplotlib draw Chinese; return the font family used, or None when none is installed."""
    import matplotlib
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    if not installed.intersection(CJK_FONTS):
        # matplotlib's font cache predates a font installed later (e.g. by `make setup`): add the files
        for path in font_manager.findSystemFonts():
            if any(key in path.lower() for key in ("wqy", "notosanscjk", "sourcehansans", "uming", "simhei", "msyh")):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError):
                    continue
        installed = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in installed:
            matplotlib.rcParams["font.sans-serif"] = [name, "DejaVu Sans"]
            matplotlib.rcParams["axes.unicode_minus"] = False
            return name
    return None
