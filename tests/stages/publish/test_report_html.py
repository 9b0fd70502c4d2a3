"""PREFIX-report.html: one self-contained page (images are data: URIs) with the funnel and the histograms."""

from __future__ import annotations

import base64
import json
import re

from transforms.publish.report_html import render_html, write_report_pages

REPORT = {
    "ok": True,
    "accounting": {"records_read": 120, "pairs_written": 80, "dead_letters": 30, "merged_duplicates": 10,
                   "problems": []},
    "stages": [
        {"stage": "read", "in": 120, "out": 115, "rejected": 5},
        {"stage": "normalize", "in": 115, "out": 100, "rejected": 15},
        {"stage": "execute", "in": 100, "out": 90, "rejected": 10},
        {"stage": "dedup", "in": 90, "out": 80, "rejected": 0, "merged": 10},
    ],
    "rejections": {"read": {"invalid_json": 5}, "parse": {"unparseable": 15}, "execute": {"no_database": 10}},
    "difficulty": {"easy": 30, "medium": 25, "hard": 15, "extra": 10},
    "concepts": {"join": 40, "aggregation": 35, "window": 2, "exists": 1},
    "execution": {"ok": 80},
    "llm": {"backend": "openai", "model": "gpt-4o-mini",
            "stages": {"questions": {"requests": 40, "calls": 41, "cache_hits": 0, "retries": 1, "failures": 0,
                                     "prompt_tokens": 24000, "completion_tokens": 900, "estimated_cost_usd": 0.0042},
                       "weak_sql": {"requests": 320, "calls": 320, "cache_hits": 0, "retries": 0, "failures": 2,
                                    "prompt_tokens": 96000, "completion_tokens": 12000, "estimated_cost_usd": 0.0}},
            "total": {"requests": 360, "calls": 361, "prompt_tokens": 120000, "completion_tokens": 12900,
                      "estimated_cost_usd": 0.0042}},
    "preference": {"weak_model": "openai:smollm2", "samples_per_question": 4,
                   "knobs": {"neg_filter": "all", "neg_limit": 1, "keep_gold": False, "dedup": True},
                   "questions_sampled": 80, "questions": {"with_pairs": 21, "no_usable_negative": 4, "no_positive": 55},
                   "samples": 320, "labels": {"correct": 60, "wrong_result": 90, "exec_error": 150, "timeout": 2,
                                              "unparseable": 10, "no_reply": 8},
                   "pairs": 21, "pairs_by_negative": {"wrong_result": 9, "exec_error": 12}, "chosen": {"sample": 21}},
    "exports": {"formats": ["pairs", "sft-chat", "dpo"], "parquet": True, "stage_by": None, "sample_rows": 0,
                "sets": {"sft-chat": 80, "dpo": 21}, "skipped": {}},
    "options": {"seed_pairs": "in/*.jsonl", "database": "postgresql://u:***@h/db", "dialect": "postgres",
                "validate": "execute", "preference": True, "format": "sft-chat,dpo,parquet"},
    "elapsed_s": 12.5,
}


def _images(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', page)


def test_every_image_is_an_embedded_png():
    page = render_html(REPORT)
    images = _images(page)
    assert len(images) >= 6  # funnel, rejections, difficulty, concepts, tokens, label mix
    for uri in images:
        assert uri.startswith("data:image/png;base64,")
        assert base64.b64decode(uri.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")


def test_the_page_fetches_nothing():
    page = render_html(REPORT)
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "<script" not in page and "<link" not in page and "url(" not in page


def test_the_page_has_the_funnel_the_histograms_tokens_and_the_label_mix():
    page = render_html(REPORT)
    for anchor in ("funnel", "rejections", "difficulty", "concepts", "llm", "preference", "exports", "options"):
        assert f'<section id="{anchor}">' in page, anchor
    assert "<td class=\"l\">normalize</td><td class=\"\">115</td>" in page  # the funnel's table
    assert "parse · unparseable" in page and "exec_error" in page and "weak_sql" in page
    assert "postgresql://u:***@h/db" in page and "u:secret" not in page


def test_concepts_below_the_curriculum_target_are_flagged():
    page = render_html(REPORT)
    window_row = re.search(r"<td class=\"l\">window</td>(.*?)</tr>", page).group(1)
    assert "below" in window_row
    join_row = re.search(r"<td class=\"l\">join</td>(.*?)</tr>", page).group(1)
    assert "met" in join_row


def test_text_from_the_data_is_escaped():
    report = dict(REPORT, rejections={"read": {"<script>alert(1)</script>": 1}})
    page = render_html(report)
    assert "<script>alert" not in page and "&lt;script&gt;" in page


def test_a_report_without_model_or_preference_still_renders():
    report = {k: v for k, v in REPORT.items() if k not in ("llm", "preference", "exports")}
    page = render_html(dict(report, rejections={}, concepts={}))
    assert "No model was called" in page and '<section id="preference">' not in page
    assert len(_images(page)) >= 2  # funnel and difficulty still plotted


def test_pages_are_written_beside_the_json_and_merge_the_training_report(tmp_path):
    prefix = tmp_path / "pairs"
    (tmp_path / "pairs-training-report.json").write_text(json.dumps({"preference": REPORT["preference"],
                                                                      "exports": REPORT["exports"]}))
    report = {k: v for k, v in REPORT.items() if k not in ("preference", "exports")}
    write_report_pages(f"{prefix}-report.json", report)
    assert report["preference"]["pairs"] == 21  # merged into the report that main then writes
    page = (tmp_path / "pairs-report.html").read_text()
    assert '<section id="preference">' in page and page.startswith("<!DOCTYPE html>")
    assert (tmp_path / "pairs-dataset" / "README.md").read_text().startswith("---\nlicense: unknown\n")


def test_a_training_report_left_by_an_earlier_run_is_not_merged(tmp_path):
    (tmp_path / "pairs-training-report.json").write_text(json.dumps({"preference": REPORT["preference"]}))
    report = {k: v for k, v in REPORT.items() if k not in ("preference", "exports")}
    report["options"] = {"format": "pairs", "validate": "parse"}
    write_report_pages(f"{tmp_path / 'pairs'}-report.json", report)
    assert "preference" not in report
    assert '<section id="preference">' not in (tmp_path / "pairs-report.html").read_text()


def _capture_figures(monkeypatch) -> list:
    from transforms.publish import report_html

    figures = []
    real = report_html.png_data_uri

    def keep(figure):
        uri = real(figure)  # lays the figure out (tight_layout) before the boxes are measured
        figures.append(figure)
        return uri

    monkeypatch.setattr(report_html, "png_data_uri", keep)
    return figures


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_legends_hide_neither_the_axis_label_nor_the_title(monkeypatch):
    from transforms.publish.report_html import funnel_plot, token_plot

    figures = _capture_figures(monkeypatch)
    token_plot({"questions": {"prompt_tokens": 10, "completion_tokens": 2}})  # one bar: the shortest plot
    funnel_plot(REPORT["stages"])
    for figure in figures:
        axes = figure.axes[0]
        renderer = figure._get_renderer()
        legend = axes.get_legend().get_window_extent(renderer)
        assert not _overlap(legend, axes.xaxis.label.get_window_extent(renderer))
        assert not _overlap(legend, axes.title.get_window_extent(renderer))
        assert not _overlap(legend, axes.get_window_extent(renderer))


def test_funnel_counts_stand_after_the_whole_bar_not_on_the_rejected_part(monkeypatch):
    from transforms.publish.report_html import funnel_plot

    figures = _capture_figures(monkeypatch)
    funnel_plot(REPORT["stages"])
    axes = figures[0].axes[0]
    ends = {row["stage"]: row["out"] + row["rejected"] + row.get("merged", 0) for row in REPORT["stages"]}
    for text in axes.texts:
        stage = list(ends)[::-1][round(text.get_position()[1])]
        assert text.get_position()[0] == ends[stage]


def test_cost_reads_n_a_when_no_price_was_given_and_a_number_when_one_was():
    unpriced = render_html(REPORT)
    assert "n/a" in unpriced and "0.0042" not in unpriced  # no price among the options: a cost is unknown
    priced = render_html({**REPORT, "options": {**REPORT["options"], "llm_price_in": 0.15}})
    assert "n/a" not in priced and "0.0042" in priced


def test_options_section_lists_what_the_user_set_not_the_defaults():
    defaults = {"seed_pairs": None, "database": None, "dialect": None, "validate": None, "preference": False,
                "format": "pairs", "num_shards": 1, "timeout_s": 5.0}
    report = {**REPORT, "options": {**REPORT["options"], "num_shards": 1, "timeout_s": 5.0}}
    section = render_html(report, defaults=defaults).split('id="options"', 1)[1]
    assert "timeout_s" not in section and "num_shards" not in section
    assert "format" in section and "sft-chat,dpo,parquet" in section


COT = {"difficulty_vs_exec:easy/easy": 5, "difficulty_vs_exec:easy/hard": 2, "difficulty_vs_exec:hard/medium": 3,
       "difficulty_vs_exec:extra/extra": 1, "solutions:ran": 40, "solutions:exec_error": 4,
       "dpo_rejected:wrong_result": 6}


def test_cot_plots_structural_against_execution_difficulty_as_a_four_by_four_table(monkeypatch):
    figures = _capture_figures(monkeypatch)
    page = render_html({**REPORT, "cot": COT})
    section = page.split('<section id="cot">', 1)[1].split("</section>", 1)[0]
    assert len(_images(section)) == 1 and _images(section)[0].startswith("data:image/png;base64,")
    rows = re.findall(r"<tr><td class=\"l\">(\w+)</td>(.*?)</tr>", section)
    cells = {name: re.findall(r"<td class=\"\">(\d+)</td>", rest) for name, rest in rows}
    assert cells["easy"] == ["5", "0", "2", "0", "7"]  # easy, medium, hard, extra by execution, then the total
    assert cells["medium"] == ["0", "0", "0", "0", "0"]
    assert cells["hard"] == ["0", "3", "0", "0", "3"]
    assert cells["extra"] == ["0", "0", "0", "1", "1"]
    assert "solutions:ran" in section and "dpo_rejected:wrong_result" in section
    heatmap = next(f for f in figures if f.axes[0].images)  # the one figure drawn with imshow
    axes = heatmap.axes[0]
    assert axes.images[0].get_array().shape == (4, 4)
    assert [t.get_text() for t in axes.get_xticklabels()] == ["easy", "medium", "hard", "extra"]
    assert [t.get_text() for t in axes.get_yticklabels()] == ["easy", "medium", "hard", "extra"]
    assert sorted(int(t.get_text()) for t in axes.texts) == sorted([5, 2, 3, 1] + [0] * 12)


def test_without_cot_there_is_no_difficulty_matrix():
    assert '<section id="cot">' not in render_html(REPORT)
    assert '<section id="cot">' not in render_html({**REPORT, "cot": {"solutions:ran": 3}})


def test_preference_alone_plots_structural_against_the_weak_models_execution_difficulty(monkeypatch):
    figures = _capture_figures(monkeypatch)
    preference = {**REPORT["preference"], "difficulty_vs_exec": {"easy/medium": 2, "hard/extra": 1}}
    page = render_html({**REPORT, "preference": preference})
    assert '<section id="cot">' not in page
    section = page.split('<section id="preference">', 1)[1].split("</section>", 1)[0]
    assert "Structural against execution difficulty" in section and "extra.weak_exec_difficulty" in section
    rows = re.findall(r"<tr><td class=\"l\">(\w+)</td>(.*?)</tr>", section)
    cells = {name: re.findall(r"<td class=\"\">(\d+)</td>", rest) for name, rest in rows}
    assert cells["easy"] == ["0", "2", "0", "0", "2"] and cells["hard"] == ["0", "0", "0", "1", "1"]
    heatmap = next(f for f in figures if f.axes[0].images)
    assert heatmap.axes[0].images[0].get_array().shape == (4, 4)
    assert "--preference" in heatmap.axes[0].get_xlabel()
