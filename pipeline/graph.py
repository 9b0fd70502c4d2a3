"""The job's graph: read → normalize → instantiate → classify → execute → filter → dedup → describe → write.

Every stage is a PTransform from ``transforms/`` with a ``records`` main output and a
``dead`` side output; this module only wires them and collects the dead letters,
so the whole product's shape is readable in one function. The validate family runs as one
composite (``ValidatePairs``), once on the pairs read and once on the evolved ones.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

import apache_beam as beam

from transforms.core.record import DeadLetter, Record, dead_letter_to_json, record_to_json, without_timings
from transforms.ingest.conversations import ReadConversations
from transforms.publish.conversations import WriteConversations
from transforms.select.dedup import DedupBeforeQuestions, DedupPairs, merges_after_questions
from transforms.publish.cot import CotSettings
from transforms.select.decontaminate import DecontaminateSettings
from transforms.label.describe import DescribeQuestions
from transforms.generate.evidence import EvidenceSettings
from transforms.validate.execute import HOT_QUERY_RECORDS
from transforms.publish.exports import WriteRejectsSet
from transforms.validate.filter import FilterSettings
from transforms.generate.generation import GenerationSettings
from transforms.validate.instantiate import InstantiateSettings
from transforms.validate.judge import JudgeSettings
from transforms.select.near_dup import MergeNearDuplicates, applies as near_dup_applies
from transforms.label.questions import QuestionSettings, WriteQuestions
from transforms.ingest.read import ReadInputs, ReadSettings
from transforms.ingest.read_stat_statements import LIVE_VIEW, ReadPgStatStatements
from transforms.publish.report import WriteReport, dead_letter_sort_key
from transforms.publish.preference import PreferenceOutputs, SamplePreferencePairs
from transforms.publish.training import TrainingSettings, WriteTrainingData, training_inputs
from transforms.select.weighting import CapPerTemplate
from transforms.kit.write import WriteJsonShards
from transforms.validate import ValidatePairs, ValidateSettings


class JobConfig(NamedTuple):
    """Everything the graph needs, resolved and validated from the options by ``pipeline.main``."""

    inputs: tuple[tuple[str, tuple[str, ...]], ...]  # (kind, patterns)
    read: ReadSettings
    target_dialect: str
    source_dialect: Optional[str]
    database: Optional[str]  # None unless --validate execute
    skip_reason: str
    timeout_s: float
    max_rows: int
    max_result_bytes: int
    max_connections: Optional[int]
    password_env: Optional[str]
    filter: FilterSettings
    dedup: str
    output: str
    num_shards: int
    record_timings: bool
    report_options: Mapping[str, Any]
    questions: Optional[QuestionSettings] = None  # None: questions from rules (DescribeQuestions)
    instantiate: InstantiateSettings = InstantiateSettings()  # placeholders, weighting, cap per template
    view_databases: Optional[tuple[str, ...]] = None  # pg_stat_statements rows of: None this db, () all
    training: Optional[TrainingSettings] = None  # --preference / --format / --stage_by: DPO pairs, SFT exports
    generation: Optional[GenerationSettings] = None  # personas, teachings, synthesis, evolution, round-trip check
    near_dup_threshold: float = 0.8  # --dedup exact|question-only: merge near-duplicate questions of one SQL
    spread_records: bool = True  # Reshuffle after reading; False only where one worker runs everything
    cot: Optional[CotSettings] = None  # --cot N: execution-voted reasoning traces, the last paid step
    decontaminate: Optional[DecontaminateSettings] = None  # --decontaminate: pairs copying a benchmark out
    judge: Optional[JudgeSettings] = None  # --judge: a model scores each final pair (--judge_min drops)
    evidence: Optional[EvidenceSettings] = None  # --evidence: notes on the questions' domain terms


def output_paths(prefix: str) -> dict[str, str]:
    """Where the pairs, dead letters and report go for an output prefix; the pairs are also written,
    identical, as the ``pairs`` set of the dataset folder (``PREFIX-dataset/``, see
    ``transforms.publish.exports``), so that folder is complete on its own."""
    from transforms.publish.exports import set_prefix

    return {"pairs": prefix, "rejects": f"{prefix}-rejects", "report": f"{prefix}-report.json",
            "pairs_copy": set_prefix(prefix, "pairs")}


def _pair_line_without_timings(record: Record) -> str:
    return record_to_json(without_timings(record))


def _dead_line_without_timings(dead: DeadLetter) -> str:
    if dead.record is not None:
        dead = dead._replace(record=without_timings(dead.record))
    return dead_letter_to_json(dead)


class _Job:
    """What the stages add while the graph is built: dead letters, report notes, funnel steps."""

    def __init__(self) -> None:
        self.dead: list[beam.PCollection] = []
        self.notes: list[beam.PCollection] = []
        self.steps: dict[str, beam.PCollection] = {}
        self.dead_all: Optional[beam.PCollection] = None  # every dead letter, once flattened by _write


def build(p: beam.Pipeline, config: JobConfig) -> dict[str, beam.PCollection]:
    """Add the whole job to pipeline ``p``; returns the main PCollections by name.

    read → (generate) → normalize → instantiate → classify → execute → filter → dedup →
    describe → (evolve, re-validated) → merge → (consistency) → (cap) → (judge) → (evidence) → (cot) →
    (weak samples) → write, report, exports.
    """
    job = _Job()
    logged, conversations = _read(p, config, job)
    records, teachings = _generate(p, config, logged, job)
    validate = _validate_settings(config)
    checked = records | "ValidatePairs" >> ValidatePairs(validate)
    # Paid work once per distinct validated unit: dedup first, then questions (rules or model, and
    # --context segmented rewriting) for the representatives only; a key holding the question merges again below
    deduped = checked.records | "DedupPairs" >> DedupBeforeQuestions(config.dedup)
    describe = WriteQuestions(config.questions) if config.questions is not None else DescribeQuestions()
    described = deduped | "DescribeQuestions" >> describe
    job.notes += checked.notes
    job.dead += [checked.dead, described.dead]
    job.steps.update(read=logged, **checked.steps, dedup=deduped, describe=described.records)
    validated, evolves = _evolve(described.records, teachings, config, validate, job)
    pairs = _merge_and_check(validated, teachings, config, evolves, job)
    pairs = _chain_of_thought(pairs, config, job)
    pairs, preference = _weak_samples(pairs, conversations, config)
    _write(p, pairs, conversations, preference, config, job)
    return {"pairs": pairs, "dead": job.dead_all, **{f"step_{k}": v for k, v in job.steps.items()}}


def _read(p: beam.Pipeline, config: JobConfig, job: _Job) -> tuple[beam.PCollection, Optional[beam.PCollection]]:
    """Every input, one stream of records (and, with ``--context full``, each conversation once)."""
    read_outputs = []
    conversations = None  # --context full: each chat conversation once, for its file and the exports
    for kind, patterns in config.inputs:
        if kind == LIVE_VIEW:  # --sql_logs pg_stat_statements: the view of --database, read live
            read = p | f"Read_{kind}" >> ReadPgStatStatements(
                patterns[0], password_env=config.password_env, databases=config.view_databases,
                db_id_field=config.read.db_id_field)
        else:
            read = p | f"Read_{kind}" >> ReadInputs(kind, patterns, config.read)
        if kind == "chat_history" and config.read.context == "full":  # each conversation once, not per pair
            conversations = p | "ReadConversations" >> ReadConversations(patterns, config.read)
            conversations | "WriteConversations" >> WriteConversations(config.output, config.num_shards)
        read_outputs.append(read.records)
        job.dead.append(read.dead)
    # Reshuffle breaks fusion with the parsers: one big log file is read by one worker, but
    # normalize → classify → describe (where the CPU goes) then spread over all of them.
    # With a single local worker there is nobody to spread to, and it would only cost
    # every record an encode and a decode.
    logged = read_outputs | "AllInputs" >> beam.Flatten(pipeline=p)
    if config.spread_records:
        logged = logged | "SpreadRecords" >> beam.Reshuffle().with_output_types(Record)
    return logged, conversations


def _generate(p: beam.Pipeline, config: JobConfig, logged: beam.PCollection,
              job: _Job) -> tuple[beam.PCollection, Optional[beam.PCollection]]:
    """Personas and teachings (side inputs of every generation prompt) and pairs synthesized from
    the schema, which join the logged ones; returns the records and the teachings."""
    generation = config.generation
    if generation is None:
        return logged, None
    from transforms.generate.personas import MakePersonas
    from transforms.generate.synthesize import SynthesizeFromSchema
    from transforms.generate.teachings import MakeTeachings

    targets = p | "Databases" >> beam.Create(list(generation.targets))
    personas = targets | "Personas" >> MakePersonas(generation)
    taught = (targets, logged) | "Teachings" >> MakeTeachings(generation, config.source_dialect)
    job.notes += [personas.notes, taught.notes]
    records = logged
    if generation.synthesize:  # new pairs join the logged ones and go through every stage below
        synthesized = (targets, personas.personas, taught.teachings) | "SynthesizeFromSchema" >> SynthesizeFromSchema(
            generation)
        records = job.steps["synthesize"] = (logged, synthesized.records) | "WithSynthesized" >> beam.Flatten()
        job.dead.append(synthesized.dead)
        job.notes.append(synthesized.notes)
    return records, taught.teachings


def _validate_settings(config: JobConfig) -> ValidateSettings:
    """The validate chain's settings for the pairs read or synthesized (``_evolve`` adjusts them)."""
    return ValidateSettings(
        target_dialect=config.target_dialect,
        source_dialect=config.source_dialect,
        database=config.database,
        instantiate=config.instantiate,
        filter=config.filter,
        timeout_s=config.timeout_s,
        max_rows=config.max_rows,
        max_result_bytes=config.max_result_bytes,
        max_connections=config.max_connections,
        password_env=config.password_env,
        skip_reason=config.skip_reason,
        # a query repeated HOT_QUERY_RECORDS times or more runs apart, so no worker gets all its records
        hot_threshold=HOT_QUERY_RECORDS if config.spread_records else None,
    )


def _evolve(validated: beam.PCollection, teachings: Optional[beam.PCollection], config: JobConfig,
            validate: ValidateSettings, job: _Job) -> tuple[beam.PCollection, bool]:
    """``--depth``/``--breadth``: evolved pairs join the validated ones after the validate chain
    again (a Beam graph cannot loop), without instantiate (they hold no placeholder) and read in
    the target dialect; that chain's dead letters are filed under stage "revalidate", the
    rejecting stage kept in the reason."""
    generation = config.generation
    if generation is None or not generation.evolves:
        return validated, False
    from transforms.generate.evolve import EvolvePairs
    from transforms.generate.generation import revalidation_dead_letter

    evolved = (validated, teachings) | "EvolvePairs" >> EvolvePairs(generation)
    again = evolved.records | "ValidateEvolved" >> ValidatePairs(validate._replace(source_dialect=None,
                                                                                   instantiate=None))
    revalidated = again.dead | "AsRevalidate" >> beam.Map(revalidation_dead_letter)
    job.dead += [evolved.dead, revalidated]
    job.notes.append(evolved.notes)
    job.steps["evolve"] = (validated, again.records) | "WithEvolved" >> beam.Flatten()
    return job.steps["evolve"], True


def _merge_and_check(validated: beam.PCollection, teachings: Optional[beam.PCollection], config: JobConfig,
                     evolves: bool, job: _Job) -> beam.PCollection:
    """Merge on the questions the job wrote (and near-duplicates), the round-trip check, the cap."""
    pairs = validated
    if merges_after_questions(config.dedup) or (evolves and config.dedup != "none"):  # written or evolved pairs
        pairs = job.steps["merge"] = validated | "MergeQuestions" >> DedupPairs(config.dedup)
    if near_dup_applies(config.dedup):  # phrasings of one SQL that say nearly the same thing
        pairs = job.steps["merge"] = pairs | "MergeNearDuplicates" >> MergeNearDuplicates(config.near_dup_threshold)
    if config.decontaminate is not None:  # benchmark copies out before any paid check and the cap
        from transforms.select.decontaminate import Decontaminate

        clean = pairs | "Decontaminate" >> Decontaminate(config.decontaminate)
        pairs = job.steps["decontaminate"] = clean.records
        job.dead.append(clean.dead)
        job.notes.append(clean.notes)
    generation = config.generation
    if generation is not None and generation.consistency:  # after dedup: one blind answer per distinct pair
        from transforms.generate.consistency import RoundTripConsistency

        checked = (pairs, teachings) | "RoundTripConsistency" >> RoundTripConsistency(generation)
        pairs = job.steps["consistency"] = checked.records
        job.dead.append(checked.dead)
    if config.instantiate.max_per_template:
        capped = pairs | "CapPerTemplate" >> CapPerTemplate(
            config.instantiate.max_per_template, config.instantiate.weight_by, config.instantiate.seed)
        pairs = job.steps["sample"] = capped.records
        job.dead.append(capped.dead)
        job.notes.append(capped.notes)
    return _judge_and_evidence(pairs, teachings, config, job)


def _judge_and_evidence(pairs: beam.PCollection, teachings: Optional[beam.PCollection], config: JobConfig,
                        job: _Job) -> beam.PCollection:
    """``--judge`` then ``--evidence``, once per final pair (after merging and the cap): the judge
    first, so no evidence is paid for a pair the judge drops."""
    if config.judge is not None:
        from transforms.validate.judge import JudgePairs

        judged = pairs | "JudgePairs" >> JudgePairs(config.judge)
        pairs = job.steps["judge"] = judged.records
        job.dead.append(judged.dead)
        job.notes.append(judged.notes)
    if config.evidence is not None:
        from transforms.generate.evidence import WriteEvidence

        if teachings is None:  # no generator made teachings: the stage uses the schema's own
            teachings = pairs.pipeline | "NoTeachings" >> beam.Create([])
        written = (pairs, teachings) | "WriteEvidence" >> WriteEvidence(config.evidence)
        pairs = job.steps["evidence"] = written.records
        job.dead.append(written.dead)
        job.notes.append(written.notes)
    return pairs


def _chain_of_thought(pairs: beam.PCollection, config: JobConfig, job: _Job) -> beam.PCollection:
    """``--cot N``: N solutions per pair that will be written, voted by execution. Last, as the
    costliest check: no pair another check drops is paid for, and its prompt sees their evidence."""
    if config.cot is None:
        return pairs
    from transforms.publish.cot import ExecutionVotedCot

    voted = pairs | "ExecutionVotedCot" >> ExecutionVotedCot(config.cot)
    job.dead.append(voted.dead)
    job.notes.append(voted.notes)
    job.steps["cot"] = voted.records
    return voted.records


def _weak_samples(pairs: beam.PCollection, conversations: Optional[beam.PCollection],
                  config: JobConfig) -> tuple[beam.PCollection, Optional[PreferenceOutputs]]:
    """``--preference``: the weak model's samples of every pair that will be written, taken before
    writing so each pair carries its solve rate (``extra.weak_solve_rate``, and ``solve_rate`` /
    ``exec_difficulty`` unless ``--cot`` set them); the DPO pairs go to the training step. The same
    pairs come back, each once (a join by record id), so the accounting is untouched."""
    training = config.training
    if training is None or training.preference is None:
        return pairs, None
    prompted = pairs if conversations is None else {"pairs": pairs, "conversations": conversations}
    preference = prompted | "SamplePreferencePairs" >> SamplePreferencePairs(training.preference)
    return preference.records, preference


def _write(p: beam.Pipeline, pairs: beam.PCollection, conversations: Optional[beam.PCollection],
           preference: Optional[PreferenceOutputs], config: JobConfig, job: _Job) -> None:
    """Pairs, dead letters and the dataset folder's sets; the report; the training exports."""
    dead = job.dead_all = job.dead | "AllDeadLetters" >> beam.Flatten()
    notes = job.notes
    if config.generation is not None:  # lineage counts: the report's per-level and per-technique accept rates
        from transforms.generate.generation import dead_notes, written_notes

        notes += [dead | "GeneratedDead" >> beam.FlatMap(dead_notes), pairs | "GeneratedWritten" >> beam.FlatMap(
            written_notes)]
    paths = output_paths(config.output)
    pair_line, dead_line = record_to_json, dead_letter_to_json
    if not config.record_timings:
        pair_line, dead_line = _pair_line_without_timings, _dead_line_without_timings
    pairs | "WritePairs" >> WriteJsonShards(paths["pairs"], config.num_shards, pair_line, lambda r: r.id,
                                            copy_prefix=paths["pairs_copy"])
    dead | "WriteDeadLetters" >> WriteJsonShards(paths["rejects"], config.num_shards, dead_line, dead_letter_sort_key)
    dead | "WriteRejectsSet" >> WriteRejectsSet(config.output, config.num_shards, record_timings=config.record_timings,
                                                parquet=config.training is not None and config.training.exports.parquet)
    all_notes = notes | "AllNotes" >> beam.Flatten()
    {"steps": job.steps, "dead": dead, "pairs": pairs, "notes": all_notes} | "Report" >> WriteReport(
        paths["report"], config.report_options)
    if config.training is not None:  # from the final pairs; the weak samples stay outside the accounting above
        training_inputs(pairs, conversations, preference) | "TrainingData" >> WriteTrainingData(config.training)
