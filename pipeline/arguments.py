"""The command line's grammar: ``--help``, the parsers of our options and Beam's, unknown options, and
options that need another.

Every argument is one of ours or one of Beam's; anything else, and any of our options that no
stage would read, is a ``UserError`` (one line, exit 2) before anything runs.
"""

from __future__ import annotations

import argparse
import difflib
from typing import Callable, Iterable, NamedTuple, Optional, Sequence

from transforms.core.errors import UserError
from pipeline.options import OPTION_NAMES, OPTION_SPECS, SqlPairsOptions

_DESCRIPTION = """\
Turn SQL query logs, chat histories with an analytics agent and existing question/SQL
pairs into validated, deduplicated, difficulty-labelled text-to-SQL training data.
Without --runner the job runs locally on Beam's in-process FnApiRunner (no download,
no network)."""

_USAGE = ("%(prog)s --output PREFIX [--sql_logs GLOB] [--chat_history GLOB] [--seed_pairs GLOB]\n"
          "                    [--database URL] [options] [Beam options]")

_BEAM_PASS_THROUGH = """\
Beam pass-through:
  Every Apache Beam pipeline option is accepted and handed to Beam unchanged;
  any other option is an error, and no name may be abbreviated. Common ones:
    --runner RUNNER          FnApiRunner (in-process, the default), DataflowRunner
    --direct_running_mode M  in_memory (default), multi_threading, multi_processing
    --direct_num_workers N   local workers (0: one per core)
    --project, --region, --temp_location, --staging_location, --job_name
                             where a Dataflow job runs and keeps its files
    --sdk_container_image, --setup_file, --requirements_file
                             what the Dataflow workers run
    --experiments, --max_num_workers, --machine_type, --service_account_email
  All of them:
  https://beam.apache.org/releases/pydoc/current/apache_beam.options.pipeline_options.html"""

#: Placeholders that say what a value is, where the option's name alone does not.
_METAVARS = {"output": "PREFIX", "sql_logs": "GLOB", "chat_history": "GLOB", "seed_pairs": "GLOB",
             "schema": "GLOB", "database": "URL", "personas_file": "FILE", "teachings": "FILE",
             "filter": "MODULE:FUNCTION", "llm_endpoint": "URL", "weak_llm_endpoint": "URL",
             "consistency_llm_endpoint": "URL", "judge_llm_endpoint": "URL", "cot_llm_endpoint": "URL",
             "decontaminate": "GLOB", "llm_cache": "DIR", "tool_name": "NAME", "context": "MODE",
             "format": "LIST", "question_styles": "LIST", "depth_techniques": "LIST", "input_licenses": "TEXT"}

#: Options every run needs, though argparse must not enforce them (Beam re-parses our options).
_REQUIRED = ("output",)


COMMANDS = ("run", "metadata")

TOP_HELP = f"""\
usage: sqlpairs run --output PREFIX [--sql_logs GLOB] [--chat_history GLOB] [--seed_pairs GLOB]
                    [--database URL] [options] [Beam options]
       sqlpairs metadata

{_DESCRIPTION}

commands:
  run        run the job; 'sqlpairs run --help' lists every option, by section
  metadata   print templates/metadata.json, generated from the same option table

example (the bundled Chinook sample):
  sqlpairs run --sql_logs examples/chinook_queries.sql --chat_history examples/chat_history.json \\
      --seed_pairs examples/seed_pairs.jsonl --database sqlite:///examples/chinook.sqlite \\
      --output out/chinook"""


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)


def _is_switch(action: argparse.Action) -> bool:
    """A boolean option given bare (``--keep_failures``) or as ``--name=true|false``."""
    return bool(action.option_strings) and action.nargs == "?" and action.const is True


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` as a user reads it: switches as switches, the required output marked."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if _is_switch(action):
            name = action.option_strings[-1]
            return f"{name}=false" if action.default is True else name
        return super()._format_action_invocation(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = super()._get_help_string(action) or ""
        return f"Required. {text}" if action.dest in _REQUIRED else text


def options_parser(prog: str) -> argparse.ArgumentParser:
    """Our options, one group per ``--help`` section; prefixes of names are not accepted."""
    parser = _OneLineParser(prog=prog, usage=_USAGE, description=_DESCRIPTION, epilog=_BEAM_PASS_THROUGH,
                            formatter_class=_HelpFormatter, allow_abbrev=False)
    SqlPairsOptions._add_argparse_args(parser)
    for action in parser._actions:
        if action.option_strings and not action.choices and not _is_switch(action):
            action.metavar = _metavar(action)
    return parser


def _metavar(action: argparse.Action) -> Optional[str]:
    """A short placeholder: ``N`` for a count, ``X`` for a number, ``VAR`` for a variable's name."""
    kind = getattr(action.type, "__name__", "")
    if action.dest in _METAVARS:
        return _METAVARS[action.dest]
    for suffix, metavar in (("_env", "VAR"), ("_field", "FIELD"), ("_model", "MODEL"), ("_project", "PROJECT"),
                            ("_location", "LOCATION"), ("dialect", "DIALECT")):
        if action.dest.endswith(suffix):
            return metavar
    if kind in ("int", "_positive_int", "_non_negative_int"):
        return "N"
    if kind in ("float", "_positive_float", "_non_negative_float", "_fraction"):
        return "X"
    return None  # argparse's default: the name in capitals


def _beam_options_parser() -> argparse.ArgumentParser:
    """Every option Beam itself knows, built from its ``PipelineOptions`` subclasses as
    ``PipelineOptions.get_all_options`` does (ours left out); a bad value is a ``UserError``."""
    from apache_beam.options import pipeline_options
    from apache_beam.options.pipeline_options import PipelineOptions

    base = getattr(pipeline_options, "_BeamArgumentParser", None)  # knows add_value_provider_argument
    if base is None:  # pragma: no cover - a Beam without it registers its options with plain argparse
        base = type("BeamArgumentParser", (argparse.ArgumentParser,),
                    {"add_value_provider_argument": argparse.ArgumentParser.add_argument})

    class BeamParser(base):  # type: ignore[misc, valid-type]
        def error(self, message: str) -> None:  # type: ignore[override]
            raise UserError(message)

    parser = BeamParser(allow_abbrev=False, add_help=False, conflict_handler="resolve")
    classes: dict[str, type] = {}
    pending = list(PipelineOptions.__subclasses__())
    while pending:
        cls = pending.pop(0)
        pending.extend(cls.__subclasses__())
        if not issubclass(cls, SqlPairsOptions):
            classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)  # type: ignore[attr-defined]
    return parser


def unknown_option_message(token: str, known: Iterable[str]) -> str:
    """The error for the first argument neither we nor Beam understand, with the nearest known name.

    >>> unknown_option_message("--databse=x", ["--database", "--dedup"])
    'unknown option --databse (did you mean --database?)'
    >>> unknown_option_message("out/x", ["--output"])
    "unexpected argument 'out/x' (options are written --name value or --name=value)"
    """
    if not token.startswith("-"):
        return f"unexpected argument {token!r} (options are written --name value or --name=value)"
    name = token.split("=", 1)[0]
    match = difflib.get_close_matches(name, list(known), n=1)
    return f"unknown option {name}" + (f" (did you mean {match[0]}?)" if match else "")


def given_options(argv: Sequence[str]) -> frozenset[str]:
    """Our options named on the command line.

    A token starting with ``--`` is always an option to argparse (a value that looks like
    one must be written ``--name=--value``), so presence is read off the tokens.

    >>> sorted(given_options(["--preference", "--samples=3", "--filter=--x", "--project", "p", "--seed", "-1"]))
    ['filter', 'preference', 'samples', 'seed']
    """
    given = set()
    for token in argv:
        if token == "--":
            break
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0]
            if name in OPTION_NAMES:
                given.add(name)
    return frozenset(given)


class Needs(NamedTuple):
    """Options that do something only with another option: given without it, they are refused."""

    options: tuple[str, ...]
    needs: str  # what to add, as the user writes it (and why)
    met: Callable[[argparse.Namespace], bool]


def _formats_with_prompts(values: argparse.Namespace) -> bool:
    """Whether an export shows tables in a prompt (where ``--sft_sample_rows`` puts rows)."""
    from transforms.publish.exports import COT_FORMATS, EXAMPLE_FORMATS, PREFERENCE_FORMATS
    from transforms.publish.training import parse_formats

    try:
        formats, _ = parse_formats(values.format)
    except ValueError:
        return True  # --format's own error is clearer
    with_prompts = (*EXAMPLE_FORMATS, *PREFERENCE_FORMATS, *COT_FORMATS)
    return bool(values.preference) or any(f in with_prompts for f in formats)


def _near_dup_applies(values: argparse.Namespace) -> bool:
    from transforms.select.near_dup import applies

    return applies(values.dedup)


def _writes_questions(values: argparse.Namespace) -> bool:
    return values.llm != "rules"


def _uses_model(values: argparse.Namespace) -> bool:
    return (values.llm != "rules" or bool(values.consistency) or bool(values.preference) or bool(values.cot)
            or bool(values.judge) or bool(values.evidence))


def _inherits_main_model(values: argparse.Namespace) -> bool:
    """A model whose project, location and prices default to ``--llm``'s (the round trip, --cot, --judge)."""
    return _writes_questions(values) or bool(values.consistency or values.cot or values.judge or values.evidence)


def _with_prefix(*prefixes: str) -> tuple[str, ...]:
    return tuple(name for name in OPTION_NAMES if name.startswith(prefixes))


#: What each option needs, read off the code that uses it: ``question_settings`` reads the
#: ``--llm`` model only for a model backend; the round-trip model inherits ``--llm``'s project,
#: location and prices (``consistency_llm_settings``); the weak model shares only the request
#: machinery (``model_settings(values, "weak_llm")``); personas feed synthesis only; teachings
#: feed synthesis, evolution and the round trip; rows in prompts need an export with a prompt.
NEEDS: tuple[Needs, ...] = (
    Needs(("samples", *_with_prefix("weak_", "dpo_")), "--preference (it shapes the weak model's DPO pairs)",
          lambda v: bool(v.preference)),
    Needs(_with_prefix("consistency_llm"), "--consistency (it is the round-trip check's model)",
          lambda v: bool(v.consistency)),
    Needs(("llm_model", "llm_endpoint", "llm_api_key_env", "llm_temperature", "questions_per_sql"),
          "a model that writes questions: --llm gemini or --llm openai (--llm rules reads none of it)",
          _writes_questions),
    Needs(("llm_project", "llm_location", "llm_price_in", "llm_price_out"),
          "a model: --llm gemini|openai, --consistency, --cot, --judge or --evidence (--llm rules reads none of it)",
          _inherits_main_model),
    Needs(("llm_max_in_flight", "llm_rpm", "llm_retries", "llm_backoff_s", "llm_timeout_s", "llm_cache"),
          "a model: --llm gemini|openai, --consistency, --preference, --cot, --judge or --evidence", _uses_model),
    Needs(_with_prefix("cot_"), "--cot N (they shape the execution-voted reasoning traces)", lambda v: bool(v.cot)),
    Needs(_with_prefix("judge_"), "--judge (they are the judge's model and threshold)", lambda v: bool(v.judge)),
    Needs(("decontaminate_threshold",), "--decontaminate (it is the question-overlap threshold of decontamination)",
          lambda v: bool(v.decontaminate)),
    Needs(("database_password_env", "timeout_s", "max_rows", "max_result_bytes", "max_connections"),
          "--database (it applies to the queries run there)", lambda v: bool(v.database)),
    Needs(("sft_sample_rows",), "an export with a prompt: --format sft-chat, prompt-completion... or --preference",
          _formats_with_prompts),
    Needs(("personas_file",), "--synthesize_from_schema (only synthesized questions are written in personas' voices)",
          lambda v: bool(v.synthesize_from_schema)),
    Needs(("teachings",), "a generator that reads it: --synthesize_from_schema, --depth, --breadth or --consistency",
          lambda v: bool(v.synthesize_from_schema or v.depth or v.breadth or v.consistency)),
    Needs(("depth_techniques",), "--depth", lambda v: bool(v.depth)),
    Needs(("max_repairs",), "--synthesize_from_schema or --depth (the stages that repair SQL)",
          lambda v: bool(v.synthesize_from_schema or v.depth)),
    Needs(("near_dup_threshold",), "--dedup exact or --dedup question-only", _near_dup_applies),
    Needs(("tool_name", "include_failures", "context"), "--chat_history", lambda v: bool(v.chat_history)),
    Needs(("sql_logs_format",), "--sql_logs", lambda v: bool(v.sql_logs)),
    Needs(("sql_field", "question_field", "db_id_field"), "--sql_logs or --seed_pairs",
          lambda v: bool(v.sql_logs or v.seed_pairs)),
)


def check_needs(values: argparse.Namespace, given: Iterable[str]) -> None:
    """Refuse an option given on the command line that nothing would read (see ``NEEDS``)."""
    given = set(given)
    for rule in NEEDS:
        for name in rule.options:
            if name in given and not rule.met(values):
                raise UserError(f"--{name} needs {rule.needs}")


def parse_run_options(argv: Sequence[str], prog: str = "sqlpairs run") -> tuple[argparse.Namespace, list[str]]:
    """Our options and the Beam options (to hand to Beam); raises ``UserError`` for anything else.

    An unknown option used to reach Beam, which only logged "Discarding unparseable args"
    and ran with the defaults: a misspelled ``--databse`` gave a run without a database.
    """
    parser = options_parser(prog)
    values, rest = parser.parse_known_args(list(argv))
    beam = _beam_options_parser()
    _, unknown = beam.parse_known_args(rest)
    if unknown:
        known = [s for p in (parser, beam) for a in p._actions for s in a.option_strings if s.startswith("--")]
        raise UserError(unknown_option_message(unknown[0], known))
    check_needs(values, set_options(values, argv))
    return values, rest


def set_options(values: argparse.Namespace, argv: Sequence[str]) -> frozenset[str]:
    """Our options named on the command line with a value other than their default.

    A Flex Template launch may pass a parameter's ``defaultValue`` from metadata.json
    although the user set nothing; such a value changes nothing, so it is never refused.
    """
    defaults = {spec.name: spec.default for spec in OPTION_SPECS}
    return frozenset(name for name in given_options(argv) if getattr(values, name) != defaults[name])
