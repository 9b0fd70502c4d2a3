"""Issue 17's layout, as a replayable move: ``transforms/`` into core, sql, formats, kit and six stage
families, and ``tests/`` into unit, stages/<family>, integration, job and fakes.

Why a script and not one big commit: the move touches every import in the repository while other
work goes on. Run on any checkout, it ``git mv``s each tracked file still at an old path
(``MAPPING``) and rewrites every reference to it in the tracked text files (``import x``,
``from x import``, ``from transforms import a, b``, dotted strings such as
``mock.patch("transforms.execute.f")``, paths such as ``transforms/execute.py`` or
``tests/test_cli.py``, ``python -m`` lines). It is idempotent: a second run finds nothing to move
and nothing to rewrite. Mapping entries whose file does not exist are skipped silently (some name
modules other work is expected to add).

A module under ``transforms/`` or ``tests/`` that the mapping does not know is reported, and the run
exits 1 after doing the rest, so the mapping gets an entry before the layout is called done.

    python tools/relayout.py            # move and rewrite
    python tools/relayout.py --check    # only report what is left to do (exit 1 if anything)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: Stage families: each a folder of ``transforms/`` that imports core, sql, formats, kit, adapters and
#: itself, never another family (tests/test_layers.py).
FAMILIES = ("ingest", "validate", "label", "generate", "select", "publish")

#: Old module (dotted) -> new module. A package maps as a whole (its submodules follow it).
MAPPING: dict[str, str] = {
    # core/ stays where it is; formats/ stays where it is.
    # sql/: pure functions over SQL and question text, no Beam, no adapters.
    "transforms.parsing": "transforms.sql.parsing",
    "transforms.trees": "transforms.sql.trees",
    "transforms.safety": "transforms.sql.safety",
    "transforms.hardness": "transforms.sql.hardness",
    "transforms.concepts": "transforms.sql.concepts",
    "transforms.placeholders": "transforms.sql.placeholders",
    "transforms.table_schema": "transforms.sql.table_schema",
    "transforms.normalize": "transforms.sql.normalize",  # the NormalizeSql stage moves on to validate/
    "transforms.guardrails": "transforms.sql.guardrails",
    "transforms.question_rules": "transforms.sql.question_rules",
    "transforms.benchmark_index": "transforms.sql.benchmark_index",
    # kit/: the Beam and adapter pieces every family shares (dead letters, counters, coders,
    # executors, result equivalence, deterministic files, model settings).
    "transforms.common": "transforms.kit.stage",
    "transforms.write": "transforms.kit.write",
    "transforms.equivalence": "transforms.kit.equivalence",
    "transforms.llm_stage": "transforms.kit.llm_stage",
    "transforms.catalog": "transforms.kit.catalog",  # the databases' tables for prompts: generate, judge, evidence, schemas
    "transforms.llm_options": "transforms.kit.llm_options",
    # ingest/: inputs -> records.
    "transforms.read": "transforms.ingest.read",
    "transforms.read_stat_statements": "transforms.ingest.read_stat_statements",
    # validate/: normalize -> instantiate -> classify -> execute -> filter.
    "transforms.instantiate": "transforms.validate.instantiate",
    "transforms.classify": "transforms.validate.classify",
    "transforms.execute": "transforms.validate.execute",
    "transforms.filter": "transforms.validate.filter",
    "transforms.judge": "transforms.validate.judge",
    # label/: a question (and what goes with it) for SQL that has none.
    "transforms.questions": "transforms.label.questions",
    "transforms.question_backend_rules": "transforms.label.rules_backend",
    "transforms.describe": "transforms.label.describe",
    # generate/: new pairs from the schema and from pairs.
    "transforms.generation": "transforms.generate.generation",
    "transforms.generation_options": "transforms.generate.options",
    "transforms.personas": "transforms.generate.personas",
    "transforms.teachings": "transforms.generate.teachings",
    "transforms.synthesize": "transforms.generate.synthesize",
    "transforms.evolve": "transforms.generate.evolve",
    "transforms.consistency": "transforms.generate.consistency",
    "transforms.evidence": "transforms.generate.evidence",  # grounded in the teachings, as the generators are
    # select/: which pairs stay.
    "transforms.dedup": "transforms.select.dedup",
    "transforms.near_dup": "transforms.select.near_dup",
    "transforms.weighting": "transforms.select.weighting",
    "transforms.decontaminate": "transforms.select.decontaminate",
    # publish/: files, report, pages, training exports.
    "transforms.report": "transforms.publish.report",
    "transforms.report_html": "transforms.publish.report_html",
    "transforms.exports": "transforms.publish.exports",
    "transforms.training": "transforms.publish.training",
    "transforms.preference": "transforms.publish.preference",
    "transforms.conversations": "transforms.publish.conversations",
    "transforms.dataset_card": "transforms.publish.dataset_card",
    # Earlier drafts of this layout (so a checkout that ran one catches up).
    "transforms.generate.catalog": "transforms.kit.catalog",
    "transforms.cot": "transforms.publish.cot",  # traces for the training targets, from exports' prompts
    "transforms.exec_difficulty": "transforms.publish.exec_difficulty",
    "transforms.sft_target": "transforms.publish.sft_target",
    "transforms.reasoning_dpo": "transforms.publish.reasoning_dpo",
    "transforms.schema_prompt": "transforms.publish.schema_prompt",
    # tests/fakes/: what many tests share (conftest.py stays at tests/, pytest's place for it).
    "tests.beam_collect": "tests.fakes.beam_collect",
    "tests.db_fixtures": "tests.fakes.db_fixtures",
    "tests.defog_sqlite": "tests.fakes.defog_sqlite",
    "tests.llm_fake_server": "tests.fakes.llm_fake_server",
    "tests.synthesis_fake": "tests.fakes.synthesis_fake",
    # tests/unit/: pure functions, no pipeline, no service.
    **{f"tests.{name}": f"tests.unit.{name}" for name in (
        "test_concepts", "test_equivalence", "test_hardness", "test_hardness_quotes", "test_placeholders",
        "test_safety", "test_question_rules", "test_question_golden", "test_fuzz", "test_layers",
        "test_formats_chat", "test_formats_contract", "test_formats_csv", "test_formats_defog",
        "test_formats_jsonl", "test_formats_parquet", "test_formats_pg_csvlog", "test_formats_sql_file",
        "test_config_boundary", "test_record_json")},
    # tests/stages/<family>/: one family's PTransforms on TestPipeline, no service.
    **{f"tests.{name}": f"tests.stages.ingest.{name}" for name in ("test_read", "test_chat_context")},
    **{f"tests.{name}": f"tests.stages.validate.{name}" for name in (
        "test_normalize", "test_instantiate", "test_execute_local", "test_filter", "test_hot_keys", "test_judge",
        "test_execute_as_they_come")},
    **{f"tests.{name}": f"tests.stages.label.{name}" for name in ("test_llm_questions", "test_llm_once")},
    **{f"tests.{name}": f"tests.stages.generate.{name}" for name in (
        "test_evolve", "test_synthesis", "test_consistency", "test_evidence")},
    **{f"tests.{name}": f"tests.stages.select.{name}" for name in ("test_dedup", "test_near_dup", "test_decontaminate")},
    "tests.test_llm_stage": "tests.stages.kit.test_llm_stage",
    "tests.test_write_links": "tests.stages.kit.test_write_links",
    **{f"tests.{name}": f"tests.stages.publish.{name}" for name in (
        "test_exports", "test_exports_load", "test_context_exports", "test_dataset_card", "test_report_html",
        "test_write_report", "test_preference", "test_cot", "test_schema_prompt", "test_cot_dpo")},
    # tests/job/: the whole job through its command line or runners, no service.
    **{f"tests.{name}": f"tests.job.{name}" for name in (
        "test_cli", "test_cli_strict", "test_llm_cli", "test_accounting", "test_hostile_inputs",
        "test_prompt_injection", "test_reliability_cli", "test_reliability_inputs", "test_template",
        "test_dataflow_graph", "test_multiworker", "test_beam_filesystems", "test_decontaminate_cli", "test_judge_cli",
        "test_schema_prompt_cli", "test_runner_threads")},
    # tests/integration/: PostgreSQL, MariaDB, model servers (real or fake, over HTTP), shared data.
    **{f"tests.{name}": f"tests.integration.{name}" for name in (
        "test_postgres", "test_mysql", "test_pg_stat_statements", "test_reliability_engines",
        "test_reliability_mysql_budget", "test_reliability_postgres", "test_reliability_sql", "test_reliability_llm",
        "test_llm_faults", "test_llm_handler", "test_llm_backends", "test_llm_local_model",
        "test_preference_local_model", "test_secrets", "test_real_data", "test_cot_local_model",
        "test_judge_local_model", "test_schema_prompt_live")},
}

#: Names that left their module when the families were untangled (module in the new layout, name) ->
#: their new module, so code written meanwhile against the old home is rewritten too (single-line
#: ``from module import a, b`` only; a parenthesized import naming one is reported).
MOVED_NAMES: dict[tuple[str, str], str] = {
    **{("transforms.validate.execute", name): "transforms.kit.executors" for name in (
        "ExecutorSet", "default_max_connections", "run_query", "top_level_order_by")},
    ("transforms.ingest.read", "split_patterns"): "transforms.core.vocab",
    **{("transforms.ingest.read", name): "transforms.kit.inputs" for name in (
        "MatchFiles", "Matched", "Unmatchable", "glob_regex", "match_pattern", "open_input")},
    ("transforms.sql.normalize", "NormalizeSql"): "transforms.validate.normalize",
    ("transforms.label.questions", "STYLES"): "transforms.core.vocab",
    **{("transforms.label.questions", name): "transforms.sql.question_text" for name in (
        "MAX_QUESTION_CHARS", "clean_question", "contains_sql", "question_problem")},
    **{("transforms.label.describe", name): "transforms.select.dedup" for name in (
        "DedupBeforeQuestions", "merges_after_questions")},
    ("transforms.publish.conversations", "ReadConversations"): "transforms.ingest.conversations",
    ("transforms.sql.table_schema", "load_ddl"): "transforms.kit.ddl_files",
}

#: New packages and why each exists (their ``__init__.py`` docstrings, written when missing).
PACKAGES: dict[str, str] = {
    "transforms/sql": "Pure functions over SQL and question text: parsing, normalizing, safety, placeholders, "
                      "hardness,\nconcepts, table schemas, question rules and guardrails. No Beam, no adapters.",
    "transforms/kit": "What every stage family shares and that needs Beam or an adapter: the dead-letter tag, "
                      "counters,\nthe record coders, executors, the databases' catalogue, input files, result "
                      "equivalence,\ndeterministic files, the model-stage helper. Families import it; it imports "
                      "no family.",
    "transforms/ingest": "Stage family ingest: inputs (logs, chats, seed pairs, pg_stat_statements) -> records "
                         "and dead letters.",
    "transforms/validate": "Stage family validate: normalize -> instantiate -> classify -> execute -> filter.",
    "transforms/label": "Stage family label: a question for SQL that has none (rules or a model).",
    "transforms/generate": "Stage family generate: new pairs from the schema and from validated pairs "
                           "(personas,\nteachings, synthesis, evolution, consistency).",
    "transforms/select": "Stage family select: which pairs stay (dedup, near-duplicates, caps per template).",
    "transforms/publish": "Stage family publish: what the job writes (pairs, report, pages, training exports).",
}

#: Text files whose references are rewritten (tracked files only).
REWRITTEN = re.compile(r"(\.py|\.md|\.ini|\.cfg|\.toml|\.yaml|\.yml|\.json|\.txt|Dockerfile)$")
REWRITTEN_DIRS = ("templates/", "bench/", ".ci/")
SELF = "tools/relayout.py"


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout


def tracked() -> list[str]:
    return git("ls-files", "-z").split("\0")[:-1]


def path_of(module: str) -> Path:
    """``transforms.sql.trees`` -> ``transforms/sql/trees.py``, or the package's folder."""
    base = REPO.joinpath(*module.split("."))
    return base if base.is_dir() else base.with_suffix(".py")


def slash(module: str, is_package: bool) -> str:
    return "/".join(module.split(".")) + ("" if is_package else ".py")


def move_files(files: set[str]) -> list[tuple[str, str]]:
    """``git mv`` every mapped module still at its old path; returns (old path, new path)."""
    moved = []
    for old, new in MAPPING.items():
        source = REPO.joinpath(*old.split("."))
        is_package = source.is_dir() and (source / "__init__.py").exists()
        old_path = slash(old, is_package)
        if not is_package and old_path not in files:
            continue
        target = REPO / slash(new, is_package)
        target.parent.mkdir(parents=True, exist_ok=True)
        git("mv", old_path, slash(new, is_package))
        moved.append((old_path, slash(new, is_package)))
    return moved


def write_packages() -> list[str]:
    written = []
    for folder, doc in PACKAGES.items():
        init = REPO / folder / "__init__.py"
        if (REPO / folder).is_dir() and not init.exists():
            init.write_text(f'"""{doc}"""\n', encoding="utf-8")
            git("add", str(init.relative_to(REPO)))
            written.append(str(init.relative_to(REPO)))
    return written


def _dotted_pattern() -> re.Pattern[str]:
    names = sorted(MAPPING, key=len, reverse=True)
    return re.compile(r"(?<![\w.])(" + "|".join(re.escape(n) for n in names) + r")(?![\w])")


def _path_pattern() -> tuple[re.Pattern[str], dict[str, str]]:
    """``transforms/execute`` (then ``.py``, ``/`` or an end) -> ``transforms/validate/execute``."""
    paths = {"/".join(old.split(".")): "/".join(new.split(".")) for old, new in MAPPING.items()}
    names = sorted(paths, key=len, reverse=True)
    return re.compile(r"(?<![\w/.])(" + "|".join(re.escape(n) for n in names) + r")(?![\w])"), paths


_FROM_PACKAGE = re.compile(r"^(?P<indent>[ \t]*)from (?P<package>(?:transforms|tests)(?:\.\w+)*) import "
                           r"(?P<names>[\w, ]+?)(?P<tail>[ \t]*(#.*)?)$", re.M)
#: A line holding this marker is left as it is (an import of the old layout kept on purpose).
KEEP = "relayout: keep"


def _split_package_import(match: re.Match[str]) -> str:
    """``from transforms import parsing, trees`` -> one line per new package of the names."""
    package, indent, tail = match["package"], match["indent"], match["tail"]
    groups: dict[str, list[str]] = {}
    for alias in (a.strip() for a in match["names"].split(",") if a.strip()):
        name = alias.split(" as ")[0].strip()
        new = MAPPING.get(f"{package}.{name}")
        home = new.rpartition(".")[0] if new and new.rpartition(".")[2] == name else package
        if new and new.rpartition(".")[2] != name:  # renamed module: keep the name the code uses
            home, alias = new.rpartition(".")[0], f"{new.rpartition('.')[2]} as {name}" if " as " not in alias else \
                f"{new.rpartition('.')[2]} as {alias.split(' as ')[1].strip()}"
        groups.setdefault(home, []).append(alias)
    if list(groups) == [package]:
        return match.group(0)
    lines = [f"{indent}from {home} import {', '.join(names)}" for home, names in groups.items()]
    lines[0] += tail
    return "\n".join(lines)


_FROM_MODULE = re.compile(r"^(?P<indent>[ \t]*)from (?P<module>[\w.]+) import (?P<names>[\w, ]+?)(?P<tail>[ \t]*(#.*)?)$")


def _move_names(line: str) -> str:
    """``from transforms.validate.execute import ExecuteQueries, ExecutorSet`` -> one import per home."""
    match = _FROM_MODULE.match(line.rstrip("\n"))
    if not match or not any(module == match["module"] for module, _ in MOVED_NAMES):
        return line
    groups: dict[str, list[str]] = {}
    for alias in (a.strip() for a in match["names"].split(",") if a.strip()):
        home = MOVED_NAMES.get((match["module"], alias.split(" as ")[0].strip()), match["module"])
        groups.setdefault(home, []).append(alias)
    if list(groups) == [match["module"]]:
        return line
    lines = [f"{match['indent']}from {home} import {', '.join(names)}" for home, names in groups.items()]
    lines[0] += match["tail"]
    return "\n".join(lines) + ("\n" if line.endswith("\n") else "")


def moved_names_in_parentheses(text: str) -> list[str]:
    """Parenthesized imports from a module that lost names: left for a person to check."""
    found = []
    for match in re.finditer(r"^[ \t]*from ([\w.]+) import \(([^)]*)\)", text, re.M):
        names = {n.strip().split(" as ")[0] for n in match[2].replace("\n", ",").split(",") if n.strip()}
        found += [f"{match[1]}.{n}" for n in sorted(names) if (match[1], n) in MOVED_NAMES]
    return found


def _basename_pattern() -> tuple[re.Pattern[str], dict[str, str]]:
    """``from llm_fake_server import X`` (a test helper by its file name, which worked only while every
    test sat in one folder) -> ``from tests.fakes.llm_fake_server import X``: one import style."""
    homes = {old.rpartition(".")[2]: new for old, new in MAPPING.items() if old.startswith("tests.")}
    homes["conftest"] = "tests.conftest"
    names = sorted(homes, key=len, reverse=True)
    return re.compile(r"^(?P<indent>[ \t]*)from (?P<name>" + "|".join(names) + r") import "), homes


#: A path written as parts, ``REPO / "tests" / "llm_fake_server.py"``.
_PATH_PARTS = re.compile(r'"(?:tests|transforms)"(?:[ \t]*/[ \t]*"[\w.]+")+')


def _path_parts(match: re.Match[str], path_re: re.Pattern[str], paths: dict[str, str]) -> str:
    parts = re.findall(r'"([\w.]+)"', match.group(0))
    joined = "/".join(parts)
    moved = path_re.sub(lambda m: paths[m.group(1)], joined)
    return match.group(0) if moved == joined else " / ".join(f'"{part}"' for part in moved.split("/"))


def rewrite(text: str, in_tests: bool = False) -> str:
    """Every reference to a moved module in ``text`` rewritten (lines marked ``KEEP`` excepted);
    ``in_tests``: also imports of test helpers by their bare file name."""
    dotted = _dotted_pattern()
    path_re, paths = _path_pattern()
    basename_re, homes = _basename_pattern()
    lines = []
    for line in text.splitlines(keepends=True):
        if KEEP not in line:
            if in_tests:
                line = basename_re.sub(lambda m: f"{m['indent']}from {homes[m['name']]} import ", line)
            line = _FROM_PACKAGE.sub(_split_package_import, line)
            line = dotted.sub(lambda m: MAPPING[m.group(1)], line)
            line = path_re.sub(lambda m: paths[m.group(1)], line)
            line = _PATH_PARTS.sub(lambda m: _path_parts(m, path_re, paths), line)
            line = _move_names(line)
        lines.append(line)
    return "".join(lines)


def rewrite_files(files: list[str]) -> list[str]:
    changed = []
    for name in files:
        if name == SELF or not (REWRITTEN.search(name) or name.startswith(REWRITTEN_DIRS)):
            continue
        path = REPO / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        new = rewrite(text, in_tests=name.startswith(("tests/", "bench/")))
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(name)
    return changed


def _stale(name: str) -> bool:
    text = (REPO / name).read_text(encoding="utf-8", errors="replace")
    return rewrite(text, in_tests=name.startswith(("tests/", "bench/"))) != text


def unknown_modules(files: list[str]) -> list[str]:
    """Modules at a place the layout no longer has: directly under ``transforms/`` or ``tests/``."""
    known_new = {slash(new, False) for new in MAPPING.values()}
    left = []
    for name in files:
        parts = name.split("/")
        if not name.endswith(".py") or name in known_new or name[:-3].replace("/", ".") in MAPPING:
            continue
        if len(parts) == 2 and parts[0] == "transforms" and parts[1] != "__init__.py":
            left.append(name)
        if len(parts) == 2 and parts[0] == "tests" and parts[1] != "conftest.py":
            left.append(name)
    return left


def relative_imports(files: list[str]) -> list[str]:
    """Relative imports in moved code would resolve elsewhere: the layout uses absolute ones only."""
    found = []
    for name in files:
        if name.endswith(".py") and name.startswith(("transforms/", "tests/")) and (REPO / name).is_file():
            for number, line in enumerate((REPO / name).read_text(encoding="utf-8").splitlines(), 1):
                if re.match(r"\s*from \.+", line):
                    found.append(f"{name}:{number}: relative import (make it absolute): {line.strip()}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report what is left to do")
    args = parser.parse_args(argv)
    files = set(tracked())
    if args.check:
        pending = [old for old in MAPPING if slash(old, path_of(old).is_dir()) in files
                   or path_of(old).is_dir()]
        stale = [name for name in sorted(files) if name != SELF and (REWRITTEN.search(name) or name.startswith(
            REWRITTEN_DIRS)) and (REPO / name).is_file() and _stale(name)]
        for name in pending:
            print(f"to move: {name} -> {MAPPING[name]}")
        for name in stale:
            print(f"to rewrite: {name}")
        unknown = unknown_modules(sorted(files))
        for name in unknown:
            print(f"UNKNOWN (add it to MAPPING): {name}", file=sys.stderr)
        return 1 if pending or stale or unknown else 0
    moved = move_files(files)
    written = write_packages()
    files_now = tracked()
    changed = rewrite_files(files_now)
    for old, new in moved:
        print(f"moved {old} -> {new}")
    for name in written:
        print(f"wrote {name}")
    print(f"rewrote references in {len(changed)} files")
    problems = relative_imports(files_now)
    warnings = []
    for name in files_now:
        if name.endswith(".py") and name != SELF and (REPO / name).is_file():
            for left in moved_names_in_parentheses((REPO / name).read_text(encoding="utf-8")):
                warnings.append(f"{name}: {left} moved (see MOVED_NAMES): check this parenthesized import")
    for line in problems + warnings:
        print(f"TO CHECK BY HAND: {line}", file=sys.stderr)
    unknown = unknown_modules(files_now)
    for name in unknown:
        print(f"UNKNOWN MODULE, NOT MOVED (add it to tools/relayout.py MAPPING): {name}", file=sys.stderr)
    return 1 if unknown or problems else 0


if __name__ == "__main__":
    sys.exit(main())
