"""Shared vocabularies: defined once, used by the options, the stages and the pages."""

#: Spider's hardness levels (test-suite-sql-eval's ``eval_hardness``), easiest first.
DIFFICULTIES = ("easy", "medium", "hard", "extra")
