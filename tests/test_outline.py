"""Outline parsing of the three shared reports, in every input format."""

from __future__ import annotations

import pytest

from conftest import REPORTS, SAMPLE, gold_rows, write_docx, write_pdf
from fazhi.corpora import parse_text, read_document
from fazhi.corpora.outline import find_items, split_title

YIYUAN, HEXI, ZHIJIANG = REPORTS  # 001, 003, 004


def outline(doc):
    return [(p.kind, p.text) for p in doc.paragraphs]


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.stem)
def test_every_gold_line_gets_its_kind(report):
    doc = read_document(report)
    by_text = {p.text: p for p in doc.paragraphs}
    for row in gold_rows(report):
        para = by_text.get(row["text"])
        if row["kind"] == "meta":
            assert para is None, f"furniture/meta line survived as a paragraph: {row['text']}"
            assert row["text"] in doc.meta["lines"]
        else:
            assert para is not None, f"content line {row['i']} not found: {row['text'][:30]}"
            assert para.kind == row["kind"], (row["i"], row["text"][:30])


def test_yiyuan_outline():
    doc = read_document(YIYUAN)
    top = [p.text for p in doc.paragraphs if p.kind == "heading" and p.level == 1]
    assert top == ["一、2019年工作情况", "二、推进法治政府建设存在的不足", "三、下一步工作打算"]
    enforcement = next(p for p in doc.paragraphs if p.text.startswith("3.扎实开展行政执法案卷评查"))
    assert enforcement.kind == "body"
    assert enforcement.title == "扎实开展行政执法案卷评查"
    assert enforcement.heading_path == ["一、2019年工作情况", "(五)坚持执法监督,严格规范公正文明执法"]
    assert enforcement.level == 3
    # a titled body paragraph is a heading level for the unnumbered paragraph under it
    after = next(p for p in doc.paragraphs if p.text.startswith("我县全面性、系统性"))
    assert after.heading_path[-1] == "2.健全完善机制"
    assert doc.meta["title"] == "沂源县人民政府关于2019年度法治政府建设工作情况的报告"
    assert doc.meta["doc_number"] == "源政〔2020〕2号"
    assert doc.meta["date"] == "2020-01-15"
    assert doc.meta["region"] == "沂源县" and doc.meta["year"] == 2019
    assert doc.meta["issuer"] == "沂源县人民政府"


def test_yiyuan_shortcomings_are_items():
    doc = read_document(YIYUAN)
    para = next(p for p in doc.paragraphs if p.heading_path == ["二、推进法治政府建设存在的不足"])
    assert len(para.items) == 3
    assert para.items[0].startswith("一是部分部门法治工作力量比较薄弱")
    assert para.items[2].startswith("三是对综合行政执法改革工作")


def test_hexi_numbered_headings_under_cn():
    doc = read_document(HEXI)
    headings = [p for p in doc.paragraphs if p.kind == "heading"]
    assert [h.level for h in headings].count(1) == 1
    assert len(headings) == 9
    body = next(p for p in doc.paragraphs if p.text.startswith("区政府充分发挥政府法律顾问的作用"))
    assert body.heading_path == ["一、任务进展及成效", "8、全力推行行政执法“三项制度”"]
    assert doc.meta["region"] == "河西区" and doc.meta["year"] == 2017


def test_zhijiang_titled_bodies():
    doc = read_document(ZHIJIANG)
    top = [p for p in doc.paragraphs if p.kind == "heading"]
    assert len(top) == 5 and all(h.level == 1 for h in top)
    appeal = next(p for p in doc.paragraphs if "出庭应诉制度。新修订" in p.text)
    assert appeal.title == "认真贯彻落实行政机关负责人出庭应诉制度"
    assert appeal.heading_path == ["五、认真落实制度,确保工作任务落到实处"]
    assert doc.meta["date"] == "2017-09-01" and doc.meta["year"] == 2017


def test_offsets_point_into_cleaned_text():
    doc = read_document(YIYUAN)
    for p in doc.paragraphs:
        assert doc.text[p.start:p.end] == p.text


def test_levels_are_inferred_per_document():
    doc = parse_text("（一）加强执法\n1.培训。全年培训执法人员200名。\n（二）化解纠纷\n1.复议。受理复议案件10件。")
    assert [(p.kind, p.level) for p in doc.paragraphs] == [("heading", 1), ("body", 2), ("heading", 1), ("body", 2)]
    assert doc.paragraphs[3].heading_path == ["（二）化解纠纷"]


def test_tables_are_content_and_page_numbers_are_not():
    text = ("关于2023年行政执法统计情况的报告\n一、全年办理行政许可2207件，详见下表。\n申请数量\n受理数量\n2207\n0\n"
            "二、全年实施行政处罚293宗，罚没收入100万元，同比增长一成。\n3\n三、执法监督。全年开展案卷评查两次，评查案卷50卷。\n"
            "行政复议\n新收案件\n办结案件\n12\n10\n0\n某某县司法局\n2024年1月5日")
    doc = parse_text(text)
    kept = [p.text for p in doc.paragraphs]
    # cells beside other cells are the table's, and a table closing the text is not a signature
    assert kept[1:5] == ["申请数量", "受理数量", "2207", "0"]
    assert kept[-6:] == ["行政复议", "新收案件", "办结案件", "12", "10", "0"]
    assert "3" not in kept and "3" in doc.meta["lines"]  # a page number between paragraphs
    assert doc.meta["lines"][-2:] == ["某某县司法局", "2024年1月5日"]
    # a signature with a date and a counter is still meta
    short = parse_text("一、全年办理行政许可2207件，详见附表，办结率百分之百。\n某某县司法局\n浏览次数\n876\n2024年1月5日")
    assert [p.text for p in short.paragraphs] == ["一、全年办理行政许可2207件，详见附表，办结率百分之百。"]


def test_list_items_openings_and_web_furniture():
    doc = parse_text("某某局2023年法治政府建设情况的报告\n现将有关情况报告如下：\n（一）加强组织领导。\n局党组全年专题研究法治工作四次。\n"
                     "（二）存在问题\n1、政策解读方面，解读形式单一。\n2、监督保障方面，公开不全面。\n"
                     "特此报告。\n（此件主动公开）\n版权所有：某某县人民政府 网站标识码：1234\n1695890271299_e630e9e3.jpg")
    assert outline(doc) == [
        ("body", "现将有关情况报告如下："),  # the report's opening, though short
        ("heading", "（一）加强组织领导。"),  # its next line is its section's text
        ("body", "局党组全年专题研究法治工作四次。"),
        ("heading", "（二）存在问题"),
        ("body", "1、政策解读方面，解读形式单一。"),  # a short sentence followed by its sibling is an item
        ("body", "2、监督保障方面，公开不全面。"),
    ]
    assert doc.paragraphs[4].heading_path == ["（二）存在问题"]
    assert doc.meta["lines"][-4:] == ["特此报告。", "（此件主动公开）", "版权所有：某某县人民政府 网站标识码：1234", "1695890271299_e630e9e3.jpg"]


def test_an_unnumbered_phrase_titles_the_text_under_it():
    doc = parse_text("一、主要工作\n坚持高位推动 法治政府建设责任不断强化\n"
                     "县政府常务会议全年专题研究法治政府建设工作四次，及时解决重大问题，主要负责人切实履行第一责任人职责。\n"
                     "二、存在的不足\n执法人员紧缺\n基层执法力量比较薄弱。")
    assert outline(doc) == [("heading", "一、主要工作"), ("heading", "坚持高位推动 法治政府建设责任不断强化"),
                            ("body", doc.paragraphs[2].text), ("heading", "二、存在的不足"),
                            ("body", "执法人员紧缺"), ("body", "基层执法力量比较薄弱。")]  # a short line under it: no title
    assert doc.paragraphs[2].heading_path == ["一、主要工作", "坚持高位推动 法治政府建设责任不断强化"]
    assert doc.paragraphs[4].heading_path == ["二、存在的不足"]  # the next numbered heading closes the section


def test_split_title_rules():
    assert split_title("加强法治宣传") == ("加强法治宣传", True)
    assert split_title("加强法治宣传。创新普法载体。") == ("加强法治宣传", False)
    assert split_title("起草《方案。》并印发。") == ("起草《方案。》并印发", True)
    assert split_title("长" * 70) == (None, False)


def test_find_items_needs_an_ordered_chain():
    assert find_items("问题:一是甲不足;二是乙不够;三是丙薄弱。") == ["一是甲不足", "二是乙不够", "三是丙薄弱。"]
    assert find_items("工作:(1)甲;(2)乙。") == ["(1)甲", "(2)乙。"]
    assert find_items("实现统一是关键,二是说明") == []


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.stem)
def test_gbk_docx_pdf_give_the_same_paragraphs(report, tmp_path):
    text = report.read_text(encoding="utf-8")
    expected = outline(parse_text(text))
    gbk = tmp_path / "r.txt"
    gbk.write_bytes(text.encode("gbk", errors="ignore"))
    assert outline(read_document(gbk)) == expected
    docx_file = write_docx(text, tmp_path / "r.docx")
    assert outline(read_document(docx_file)) == expected
    html = tmp_path / "r.html"
    body = "".join(f"<p>{line}</p>" for line in text.splitlines())
    html.write_text(f"<html><head><script>var x=1;</script></head><body>{body}</body></html>", encoding="utf-8")
    assert outline(read_document(html)) == expected
    # STSong-Light has no glyph for U+00B7 "·", so the PDF cannot carry it
    pdf_file = write_pdf(text, tmp_path / "r.pdf")
    assert outline(read_document(pdf_file)) == [(k, t.replace("·", "")) for k, t in expected]


def test_sample_report_has_the_genre_outline():
    doc = read_document(SAMPLE)
    top = [p.text for p in doc.paragraphs if p.kind == "heading" and p.level == 1]
    assert len(top) == 3 and "存在的不足" in top[1]
    shortcomings = next(p for p in doc.paragraphs if p.heading_path == [top[1]])
    assert len(shortcomings.items) == 3
    assert doc.meta["region"] == "青溪县" and doc.meta["year"] == 2023
    assert not any("打印" in p.text or "浏览次数" in p.text for p in doc.paragraphs)
