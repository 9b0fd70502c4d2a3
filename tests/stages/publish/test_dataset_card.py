"""The dataset card: Hub front matter with a config per shard set, the user's licenses, never a foreign README."""

from __future__ import annotations

from transforms.publish.dataset_card import MARKER, render_card, write_dataset_card

REPORT = {
    "ok": True,
    "accounting": {"records_read": 1500, "pairs_written": 1200, "dead_letters": 250, "merged_duplicates": 50},
    "stages": [{"stage": "read", "in": 1500, "out": 1450, "rejected": 50}],
    "difficulty": {"easy": 600, "medium": 400, "hard": 150, "extra": 50},
    "concepts": {"join": 500, "aggregation": 450, "window": 5},
    "preference": {"weak_model": "openai:smollm2", "samples": 40, "questions_sampled": 10, "pairs": 6,
                   "knobs": {"neg_filter": "all"}, "labels": {"correct": 10, "exec_error": 30}},
    "exports": {"formats": ["pairs", "sft-chat", "dpo"], "parquet": False, "stage_by": "difficulty",
                "sets": {"sft-chat": 1200, "sft-chat-easy": 600, "sft-chat-medium": 400, "dpo": 6, "dpo-easy": 6,
                         "pairs-easy": 600}},
    "options": {"seed_pairs": "seeds/*.jsonl", "database": "postgresql://u:***@h/db", "dialect": "postgres",
                "validate": "execute", "llm": "rules", "max_rows": 10000, "num_shards": 1, "dedup": "sql-only",
                "input_licenses": "Defog sql-eval: Apache-2.0; our logs: internal"},
}


def _front_matter(card: str) -> str:
    assert card.startswith("---\n")
    return card.split("\n---\n", 1)[0]


def test_front_matter_follows_hub_conventions():
    front = _front_matter(render_card("pairs", REPORT))
    assert "license: other" in front  # free-text licenses are no single Hub id
    assert "task_categories:\n- text-generation" in front
    assert "size_categories:\n- 1K<n<10K" in front
    assert ('- config_name: "pairs"\n  data_files:\n  - split: train\n    path: "jsonl/pairs/train-?????-of-?????.jsonl"\n'
            '  default: true') in front


def _configs(front: str) -> list[str]:
    head = front.split("\ndataset_info:\n", 1)[0]
    return [line.split('"')[1] for line in head.splitlines() if line.startswith("- config_name:")]


def test_every_nonempty_shard_set_is_a_config():
    configs = _configs(_front_matter(render_card("pairs", REPORT)))
    assert configs == ["pairs", "sft-chat", "dpo", "pairs-easy", "sft-chat-easy", "dpo-easy", "sft-chat-medium",
                       "rejects"]


def test_a_set_without_rows_is_not_declared():
    exports = dict(REPORT["exports"], sets={"sft-chat": 1200, "dpo": 0})
    report = dict(REPORT, exports=exports, accounting=dict(REPORT["accounting"], dead_letters=0))
    assert _configs(_front_matter(render_card("pairs", report))) == ["pairs", "sft-chat"]


def test_every_config_declares_its_features():
    front = _front_matter(render_card("pairs", REPORT))
    info = front.split("\ndataset_info:\n", 1)[1]
    assert [line.split('"')[1] for line in info.splitlines() if line.startswith("- config_name:")] == _configs(front)
    assert '  - name: "parameters"\n    list:\n    - name: "name"\n      dtype: string' in info
    assert '  - name: "extra"\n    dtype: json' in info  # JSONL: an object whose keys vary by row


def test_the_licenses_are_quoted_as_given_and_limits_are_listed():
    card = render_card("pairs", REPORT)
    assert "Defog sql-eval: Apache-2.0; our logs: internal" in card
    assert "## Known limits" in card and "Concepts below the curriculum's targets" in card
    assert "DPO labels compare results on one database" in card
    assert "| window | 5 | 0.4% | 5% | below target |" in card


def test_a_single_hub_license_id_goes_in_the_front_matter():
    report = dict(REPORT, options=dict(REPORT["options"], input_licenses="MIT"))
    assert "license: mit" in _front_matter(render_card("pairs", report))


def test_the_card_is_the_same_text_for_the_same_report():
    assert render_card("pairs", REPORT) == render_card("pairs", dict(REPORT, elapsed_s=99.0))


def test_a_readme_we_did_not_write_is_never_overwritten(tmp_path):
    (tmp_path / "pairs-dataset").mkdir()
    theirs = tmp_path / "pairs-dataset" / "README.md"
    theirs.write_text("# My project\n")
    path = write_dataset_card(str(tmp_path / "pairs"), REPORT)
    assert theirs.read_text() == "# My project\n"
    assert path.endswith("pairs-README.md") and MARKER in (tmp_path / "pairs-README.md").read_text()


def test_our_own_readme_is_replaced(tmp_path):
    first = write_dataset_card(str(tmp_path / "pairs"), REPORT)
    second = write_dataset_card(str(tmp_path / "pairs"), dict(REPORT, accounting=dict(REPORT["accounting"],
                                                                                        pairs_written=7)))
    assert first == second == str(tmp_path / "pairs-dataset" / "README.md")
    assert "7 pairs written" in (tmp_path / "pairs-dataset" / "README.md").read_text()
