"""``PREFIX-report.html``: the JSON report as one self-contained page of plots and tables.

Written after a local run from the finished report (``pipeline.main._finish_report`` calls
``write_report_pages``): the funnel per stage, rejection reasons, difficulty and concept
distributions (concepts against the curriculum's targets), model token use and cost, for
preference data the label mix of the weak model's samples, and structural (Spider) difficulty
against execution difficulty (how often a model's samples solved the pair) from whichever
source the run had: the ``--cot`` solutions (the ``cot`` section's counts) and the
``--preference`` weak model (counted from each pair's ``extra.weak_exec_difficulty``). Plots are PNGs drawn with
matplotlib's Agg canvas (``matplotlib.figure.Figure``: no pyplot, no display, no global
state) and embedded as ``data:`` URIs, so the page opens anywhere — a CI artifact, a
bucket, an e-mail — without fetching anything.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from typing import Any, Mapping, Optional, Sequence

from transforms.core.vocab import DIFFICULTIES

_LOGGER = logging.getLogger(__name__)

#: Colours of the sample labels (correct green, the failures warm, no answer grey).
LABEL_COLOURS = {
    "correct": "#2e7d32", "wrong_result": "#ef6c00", "exec_error": "#c62828", "timeout": "#6a1b9a",
    "unparseable": "#795548", "no_reply": "#9e9e9e", "unlabelled": "#424242",
}
_OUT, _REJECTED, _MERGED, _ADDED = "#1565c0", "#c62828", "#9e9e9e", "#2e7d32"
_STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #212121; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 3px 9px; text-align: right; }
th { background: #f5f5f5; } td.l, th.l { text-align: left; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
.ok { color: #2e7d32; font-weight: bold; } .bad { color: #c62828; font-weight: bold; }
.cards { display: flex; gap: 1em; flex-wrap: wrap; } .card { border: 1px solid #ddd; border-radius: 6px;
padding: 0.6em 1em; min-width: 9em; } .card b { display: block; font-size: 1.5em; }
.muted { color: #757575; }
"""


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    return figure, figure.subplots()


def png_data_uri(figure) -> str:
    """The figure as a ``data:image/png;base64,...`` URI (no timestamp or software tag: stable bytes)."""
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _bar_height(count: int) -> float:
    return max(1.6, 0.34 * count + 0.9)


def _legend_on_top(axes, title: str) -> None:
    """The legend in one row between the title and the axes, so it hides neither a bar nor the axis label.

    Placed in axes coordinates under the axes it met the x-axis label on short plots (the label sits a
    fixed number of points below the axes, the legend a fraction of the axes' height); above, the
    title's padding in points leaves it room whatever the plot's height.
    """
    axes.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=4, fontsize=8, frameon=False,
                borderaxespad=0.2)
    axes.set_title(title, pad=22)


def _whole_numbers(axes) -> None:
    """Counts have no halves: integer ticks only."""
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def funnel_plot(stages: Sequence[Mapping[str, Any]]) -> Optional[str]:
    """Stacked horizontal bars per stage: records out, rejected, merged (and added)."""
    if not stages:
        return None
    names = [row["stage"] for row in stages][::-1]
    rows = list(stages)[::-1]
    figure, axes = _figure(9, _bar_height(len(rows)) + 0.5)
    outs = [row.get("out", 0) for row in rows]
    rejected = [row.get("rejected", 0) for row in rows]
    merged = [row.get("merged", 0) for row in rows]
    axes.barh(names, outs, color=_OUT, label="out")
    axes.barh(names, rejected, left=outs, color=_REJECTED, label="rejected")
    axes.barh(names, merged, left=[o + r for o, r in zip(outs, rejected)], color=_MERGED, label="merged")
    added = [row.get("added", 0) for row in rows]
    if any(added):
        axes.barh(names, added, left=[o + r + m for o, r, m in zip(outs, rejected, merged)], color=_ADDED,
                  label="added", alpha=0.5)
    ends = [o + r + m + a for o, r, m, a in zip(outs, rejected, merged, added)]
    for y, (out, rej, end) in enumerate(zip(outs, rejected, ends)):  # after the whole bar: on white, never on red
        axes.text(end, y, f" {out}" + (f" (-{rej})" if rej else ""), va="center", fontsize=8)
    axes.set_xlim(0, max(ends) * 1.15 or 1)
    axes.set_xlabel("records")
    _whole_numbers(axes)
    _legend_on_top(axes, "Records per stage")
    return png_data_uri(figure)


def bar_plot(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str,
             colours: Optional[Sequence[str]] = None, targets: Optional[Sequence[Optional[float]]] = None,
             percent: bool = False) -> Optional[str]:
    """Horizontal bars, first label on top; optional target markers (black ticks)."""
    if not labels:
        return None
    labels, values = list(labels)[::-1], list(values)[::-1]
    figure, axes = _figure(9, _bar_height(len(labels)))
    colour = list(colours)[::-1] if colours else _OUT
    axes.barh(labels, values, color=colour)
    top = max(values) if values else 0
    if targets:
        marks = list(targets)[::-1]
        for y, target in enumerate(marks):
            if target is not None:
                axes.plot([target, target], [y - 0.4, y + 0.4], color="black", linewidth=2)
        top = max([top] + [t for t in marks if t is not None])
    for y, value in enumerate(values):
        axes.text(value, y, f" {value:.0%}" if percent else f" {value:g}", va="center", fontsize=8)
    axes.set_xlim(0, (top or 1) * 1.15)
    if not percent:
        _whole_numbers(axes)
    axes.set_xlabel(xlabel)
    axes.set_title(title)
    return png_data_uri(figure)


def difficulty_matrix(counts: Mapping[str, int], prefix: str = "difficulty_vs_exec:",
                      ) -> tuple[list[str], list[str], list[list[int]]]:
    """Spider levels (rows) × execution levels (columns) from ``<prefix><spider>/<exec>`` counts
    (``report["cot"]``'s, or with ``prefix=""`` ``report["preference"]["difficulty_vs_exec"]``);
    the four levels in order, any other label after them.

    >>> rows, columns, counts = difficulty_matrix({"difficulty_vs_exec:easy/hard": 2, "difficulty_vs_exec:hard/easy": 1,
    ...                                            "solutions:ran": 9})
    >>> rows == columns == ["easy", "medium", "hard", "extra"], counts[0], counts[2]
    (True, [0, 0, 2, 0], [1, 0, 0, 0])
    >>> difficulty_matrix({"difficulty_vs_exec:None/extra": 1})[0]
    ['easy', 'medium', 'hard', 'extra', 'None']
    >>> difficulty_matrix({"medium/medium": 3}, prefix="")[2][1]
    [0, 3, 0, 0]
    """
    cells = {}
    for key, value in counts.items():
        if key.startswith(prefix) and "/" in key:
            structural, execution = key[len(prefix):].rsplit("/", 1)
            cells[(structural, execution)] = cells.get((structural, execution), 0) + int(value)

    def levels(found: set) -> list[str]:
        return list(DIFFICULTIES) + sorted(found - set(DIFFICULTIES))

    rows, columns = levels({r for r, _ in cells}), levels({c for _, c in cells})
    return rows, columns, [[cells.get((r, c), 0) for c in columns] for r in rows]


def heatmap_plot(rows: Sequence[str], columns: Sequence[str], counts: Sequence[Sequence[int]], title: str,
                 ylabel: str, xlabel: str) -> Optional[str]:
    """A table of counts as shaded cells, each cell's count written in it (none when all are 0)."""
    if not rows or not columns or not any(any(row) for row in counts):
        return None
    figure, axes = _figure(1.3 * len(columns) + 2.4, 0.8 * len(rows) + 1.6)
    top = max(max(row) for row in counts)
    axes.imshow(counts, cmap="Blues", vmin=0, vmax=top, aspect="auto")
    for y, row in enumerate(counts):
        for x, value in enumerate(row):
            axes.text(x, y, str(value), ha="center", va="center", fontsize=9,
                      color="white" if value > top / 2 else "#212121")
    axes.set_xticks(range(len(columns)), list(columns))
    axes.set_yticks(range(len(rows)), list(rows))
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    return png_data_uri(figure)


def token_plot(stages: Mapping[str, Mapping[str, Any]]) -> Optional[str]:
    """Prompt and completion tokens per model stage."""
    if not stages:
        return None
    names = list(stages)[::-1]
    prompt = [stages[n].get("prompt_tokens", 0) for n in names]
    completion = [stages[n].get("completion_tokens", 0) for n in names]
    figure, axes = _figure(9, _bar_height(len(names)) + 0.6)
    axes.barh(names, prompt, color=_OUT, label="prompt tokens")
    axes.barh(names, completion, left=prompt, color="#ef6c00", label="completion tokens")
    axes.set_xlabel("tokens")
    _whole_numbers(axes)
    _legend_on_top(axes, "Model tokens per stage")
    return png_data_uri(figure)


# ---------------------------------------------------------------------------------------------
# HTML pieces
# ---------------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _img(uri: Optional[str], alt: str) -> str:
    if uri is None:
        return f'<p class="muted">{_e(alt)}: nothing to plot.</p>'
    return f'<img src="{uri}" alt="{_e(alt)}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{_e(v)}</td>' for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{"".join(parts)}</section>'


def _summary(report: Mapping[str, Any]) -> str:
    accounting = report.get("accounting") or {}
    cards = [("records read", accounting.get("records_read", 0)), ("pairs written", accounting.get("pairs_written", 0)),
             ("dead letters", accounting.get("dead_letters", 0)),
             ("duplicates merged", accounting.get("merged_duplicates", 0))]
    preference = report.get("preference")
    if preference:
        cards += [("weak-model samples", preference.get("samples", 0)), ("DPO pairs", preference.get("pairs", 0))]
    if "elapsed_s" in report:
        cards.append(("seconds", report["elapsed_s"]))
    status = ('<p class="ok">Accounting check passed: every record read is a pair, a dead letter or a merged '
              "duplicate.</p>" if report.get("ok", True) else
              '<p class="bad">Accounting check FAILED: ' + _e("; ".join(accounting.get("problems") or [])) + "</p>")
    return ('<div class="cards">' + "".join(f'<div class="card"><b>{_e(v)}</b>{_e(k)}</div>' for k, v in cards)
            + "</div>" + status)


def _funnel(report: Mapping[str, Any]) -> str:
    stages = report.get("stages") or []
    rows = [(r["stage"], r.get("in", 0), r.get("out", 0), r.get("rejected", 0), r.get("merged", ""), r.get("added", ""))
            for r in stages]
    return _section("funnel", "Funnel per stage", _img(funnel_plot(stages), "funnel"),
                    _table(("stage", "in", "out", "rejected", "merged", "added"), rows))


def _rejections(report: Mapping[str, Any]) -> str:
    items = sorted(((f"{stage} · {reason}", n) for stage, reasons in (report.get("rejections") or {}).items()
                    for reason, n in reasons.items()), key=lambda item: (-item[1], item[0]))
    shown = items[:30]
    plot = bar_plot([k for k, _ in shown], [v for _, v in shown], "Dead letters by stage and reason", "dead letters",
                    colours=[_REJECTED] * len(shown))
    note = f'<p class="muted">{len(items) - len(shown)} more reasons in the table.</p>' if len(items) > len(shown) else ""
    return _section("rejections", "Rejection reasons", _img(plot, "rejection reasons"), note,
                    _table(("stage · reason", "dead letters"), items))


def _difficulty(report: Mapping[str, Any]) -> str:
    counts = report.get("difficulty") or {}
    labels = [d for d in DIFFICULTIES if d in counts] + sorted(set(counts) - set(DIFFICULTIES))
    plot = bar_plot(labels, [counts[d] for d in labels], "Pairs per difficulty (Spider hardness)", "pairs")
    return _section("difficulty", "Difficulty distribution", _img(plot, "difficulty histogram"),
                    _table(("difficulty", "pairs"), [(d, counts[d]) for d in labels]))


def _concepts(report: Mapping[str, Any]) -> str:
    from transforms.publish.exports import curriculum_targets

    counts = report.get("concepts") or {}
    total = (report.get("accounting") or {}).get("pairs_written") or 0
    targets = curriculum_targets()
    names = sorted(set(counts) | set(targets), key=lambda c: (-counts.get(c, 0), c))
    shares = [counts.get(c, 0) / total if total else 0.0 for c in names]
    marks = [targets.get(c) for c in names]
    colours = [_OUT if targets.get(c) is None or share >= targets[c] else "#ef6c00" for c, share in zip(names, shares)]
    plot = bar_plot(names, shares, "Share of pairs using each concept (| = curriculum target)", "share of pairs",
                    colours=colours, targets=marks, percent=True) if total else None
    rows = [(c, counts.get(c, 0), f"{s:.1%}", f"{targets[c]:.0%}" if c in targets else "",
             ("below" if s < targets[c] else "met") if c in targets else "") for c, s in zip(names, shares)]
    return _section("concepts", "Concept distribution against the curriculum", _img(plot, "concept histogram"),
                    '<p class="muted">Orange bars are below the curriculum target (SQLCoder 2-style curriculum: '
                    "basic clauses common; date functions, window functions, CTEs, ratios and NULL handling "
                    "present on purpose).</p>",
                    _table(("concept", "pairs", "share", "target", "coverage"), rows))


_PRICE_OPTIONS = ("llm_price_in", "llm_price_out", "weak_llm_price_in", "weak_llm_price_out")


def _priced(options: Mapping[str, Any]) -> bool:
    """Whether the run was given any token price: without one a cost of 0 means "unknown", not "free".

    >>> _priced({"llm_price_in": 0.0}), _priced({"llm_price_out": 0.6})
    (False, True)
    """
    return any(float(options.get(name) or 0) > 0 for name in _PRICE_OPTIONS)


def _llm_cells(row: Mapping[str, Any], fields: Sequence[str], priced: bool) -> list[Any]:
    return [row.get(f, 0) if f != "estimated_cost_usd" or priced else "n/a" for f in fields]


def _llm(report: Mapping[str, Any]) -> str:
    llm = report.get("llm")
    if not llm:
        return _section("llm", "Model token use and cost", '<p class="muted">No model was called in this run '
                        "(questions by rules, no preference sampling).</p>")
    stages = llm.get("stages") or {}
    fields = ("requests", "calls", "cache_hits", "retries", "failures", "prompt_tokens", "completion_tokens",
              "estimated_cost_usd")
    priced = _priced(report.get("options") or {})
    rows = [(name, *_llm_cells(row, fields, priced)) for name, row in stages.items()]
    rows.append(("total", *_llm_cells(llm.get("total") or {}, fields, priced)))
    who = f"{llm.get('backend', '')}:{llm.get('model', '')}"
    weak = llm.get("weak_model")
    if weak:
        weak_name = f"{weak.get('backend')}:{weak.get('model')}"
        who = f"weak model {weak_name}" if set(stages) <= {"weak_sql"} else f"{who}; weak model {weak_name}"
    return _section("llm", "Model token use and cost", f"<p>Models: {_e(who)}</p>",
                    _img(token_plot(stages), "token use"), _table(("stage",) + fields, rows))


def _preference(report: Mapping[str, Any]) -> str:
    preference = report.get("preference")
    if not preference:
        return ""
    labels = preference.get("labels") or {}
    total = sum(labels.values())
    plot = bar_plot(list(labels), list(labels.values()), f"Weak-model samples by label ({total} samples)", "samples",
                    colours=[LABEL_COLOURS.get(k, _OUT) for k in labels])
    knobs = preference.get("knobs") or {}
    knob_text = ", ".join(f"{k}={v}" for k, v in knobs.items())
    outcomes = preference.get("questions") or {}
    return _section(
        "preference", "Preference data: weak-model samples",
        f"<p>Weak model {_e(preference.get('weak_model'))}, {_e(preference.get('samples_per_question'))} samples per "
        f"question; pair knobs: {_e(knob_text)}. {_e(preference.get('pairs', 0))} DPO pairs from "
        f"{_e(outcomes.get('with_pairs', 0))} of {_e(preference.get('questions_sampled', 0))} questions sampled.</p>",
        _img(plot, "sample label mix"),
        _table(("label", "samples", "share"), [(k, v, f"{v / total:.1%}" if total else "") for k, v in labels.items()]),
        "<h3>How each question ended</h3>", _table(("outcome", "questions"), list(outcomes.items())),
        "<h3>Pairs by kind of rejected answer</h3>",
        _table(("rejected label", "pairs"), list((preference.get("pairs_by_negative") or {}).items())),
        _weak_difficulty(preference.get("difficulty_vs_exec") or {}),
    )


def _difficulty_heatmap(counts: Mapping[str, int], prefix: str, source: str) -> str:
    """The structural × execution heatmap and its table (the counts of ``difficulty_matrix``)."""
    rows, columns, cells = difficulty_matrix(counts, prefix)
    plot = heatmap_plot(rows, columns, cells, "Pairs by structural and execution difficulty",
                        "structural (Spider hardness)", f"execution ({source})")
    table = _table(("structural (rows) / execution (columns)", *columns, "total"),
                   [(r, *row, sum(row)) for r, row in zip(rows, cells)])
    return _img(plot, "structural against execution difficulty") + table


def _weak_difficulty(counts: Mapping[str, int]) -> str:
    """``--preference``: Spider's difficulty against the weak model's solve-rate level, per written pair."""
    if not counts:
        return ""
    return ("<h3>Structural against execution difficulty</h3>"
            '<p class="muted">Every written pair whose samples were compared with the gold, by Spider\'s hardness '
            "(rows) and the level of the weak model's solve rate (columns; DataFlow's thresholds 2/5/9 of 10, "
            "unlabelled samples left out), as its <code>extra.weak_exec_difficulty</code> says.</p>"
            + _difficulty_heatmap(counts, "", "--preference weak-model solve rate"))


def _cot(report: Mapping[str, Any]) -> str:
    """``--cot``: Spider's structural difficulty against the execution difficulty of the solutions' votes."""
    cot = report.get("cot") or {}
    if not any(key.startswith("difficulty_vs_exec:") for key in cot):
        return ""
    other = [(key, n) for key, n in cot.items() if not key.startswith("difficulty_vs_exec:")]
    return _section(
        "cot", "Chain of thought: structural against execution difficulty",
        '<p class="muted">Every pair the solutions voted on (kept or not). Structural difficulty reads the SQL '
        "(Spider's hardness); execution difficulty is how often the sampled solutions gave the gold result "
        "(DataFlow's thresholds 2/5/9 of 10). A structurally easy pair that is hard by execution often has an "
        "ambiguous question.</p>",
        _difficulty_heatmap(cot, "difficulty_vs_exec:", "--cot solve rate"),
        "<h3>Solutions and reasoning-level DPO traces</h3>" + _table(("count", "n"), other) if other else "")


def _exports(report: Mapping[str, Any]) -> str:
    exports = report.get("exports")
    if not exports:
        return ""
    rows = [(name, n) for name, n in (exports.get("sets") or {}).items()]
    skipped = exports.get("skipped") or {}
    note = f'<p class="muted">Not exported: {_e(skipped)}</p>' if skipped else ""
    return _section("exports", "Training exports",
                    f"<p>Formats {_e(', '.join(exports.get('formats') or []))}"
                    f"{' + Parquet copies' if exports.get('parquet') else ''}"
                    f"{'; staged by ' + _e(exports['stage_by']) if exports.get('stage_by') else ''}.</p>",
                    _table(("shard set", "rows"), rows), note)


def _histograms(report: Mapping[str, Any]) -> str:
    parts = []
    for key, title in (("execution", "Execution status of the pairs"), ("sources", "Sources"),
                       ("question_sources", "Who wrote the questions")):
        counts = report.get(key) or {}
        if counts:
            parts.append(f"<h3>{_e(title)}</h3>" + _table((key, "pairs"), list(counts.items())))
    return _section("more", "Other distributions", *parts) if parts else ""


def _options(report: Mapping[str, Any], defaults: Optional[Mapping[str, Any]] = None) -> str:
    """The options the user set: those that differ from their defaults (all non-empty ones without
    ``defaults``); the report's JSON keeps every option."""
    given = report.get("options") or {}
    if defaults is not None:
        options = {k: v for k, v in given.items() if k not in defaults or v != defaults[k]}
    else:
        options = {k: v for k, v in given.items() if v not in (None, "", False)}
    if not options:
        return _section("options", "Options set", '<p class="muted">All options at their defaults.</p>')
    return _section("options", "Options set", '<p class="muted">Options that differ from their defaults '
                    "(every option is in the JSON report).</p>",
                    _table(("option", "value"), list(options.items()), left=2))


def render_html(report: Mapping[str, Any], title: str = "sqlpairs report",
                defaults: Optional[Mapping[str, Any]] = None) -> str:
    """The whole page (no external resources); ``defaults`` (option -> default) trims "Options set"."""
    body = "".join((
        f"<h1>{_e(title)}</h1>",
        _summary(report),
        _funnel(report),
        _rejections(report),
        _difficulty(report),
        _concepts(report),
        _llm(report),
        _preference(report),
        _cot(report),
        _exports(report),
        _histograms(report),
        _options(report, defaults),
    ))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_STYLE}</style></head><body>{body}</body></html>\n")


def prefix_of(report_path: str) -> str:
    """``out/pairs-report.json`` → ``out/pairs``."""
    return report_path[: -len("-report.json")] if report_path.endswith("-report.json") else report_path


class _Skipped(Exception):
    """--html_report false: the page is not wanted."""


def write_report_pages(report_path: str, report: dict[str, Any], html: bool = True,
                       defaults: Optional[Mapping[str, Any]] = None) -> None:
    """Merge the training report into ``report``; write ``PREFIX-report.html`` (unless ``html`` is
    False) and the dataset card.

    Never raises: the pairs are written already, and these pages only describe them.
    """
    from transforms.publish.training import merge_training_report
    from transforms.kit.write import write_text_file

    prefix = prefix_of(report_path)
    merge_training_report(report_path, report)
    try:
        if not html:
            raise _Skipped()
        name = prefix.rsplit("/", 1)[-1]
        write_text_file(f"{prefix}-report.html", render_html(report, f"sqlpairs report: {name}", defaults))
    except _Skipped:
        pass
    except Exception as error:  # noqa: BLE001
        _LOGGER.warning("could not write the HTML report: %s: %s", type(error).__name__, error)
    try:
        from transforms.publish.dataset_card import write_dataset_card

        write_dataset_card(prefix, report, defaults)
    except Exception as error:  # noqa: BLE001
        _LOGGER.warning("could not write the dataset card: %s: %s", type(error).__name__, error)
