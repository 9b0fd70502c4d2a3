"""Execution-based difficulty: how often a model's samples solve a question, as a level.

Spider's hardness (``transforms.sql.hardness``) reads the SQL; this reads the model. Where a
stage has N independent samples of a model answering a pair's question (the ``--cot``
solutions), the share whose result equals the gold result is the pair's *solve rate*, and
its level follows OpenDCAI DataFlow's ``SQLExecutionClassifier``: 10 samples, thresholds
2/5/9 on the number solved, labels extra/hard/medium/easy::

    solved of 10   0-2     3-5    6-9      10
    level          extra   hard   medium   easy

With N samples other than 10 the same cut points apply to the rate (solved / N):
``rate <= 0.2`` extra, ``<= 0.5`` hard, ``<= 0.9`` medium, else easy — identical to
DataFlow's at N = 10. A sample that did not run counts as not solved (DataFlow's
denominator is ``num_generations`` too). The levels use Spider's names, so
``--stage_by exec_difficulty`` writes the same staged sets (``pairs-easy`` ...) as
``--stage_by difficulty``.
"""

from __future__ import annotations

from fractions import Fraction

from transforms.core.vocab import DIFFICULTIES

#: Levels, easiest first: Spider's names.
EXEC_LEVELS = DIFFICULTIES
#: DataFlow's thresholds on samples solved out of 10, and the level at or under each.
DATAFLOW_SAMPLES = 10
DATAFLOW_THRESHOLDS = ((2, "extra"), (5, "hard"), (9, "medium"))


def solve_rate(solved: int, samples: int) -> float:
    """The share of samples that solved the question, rounded to 4 places.

    >>> solve_rate(3, 8), solve_rate(0, 0)
    (0.375, 0.0)
    """
    return round(solved / samples, 4) if samples else 0.0


def exec_difficulty(solved: int, samples: int) -> str:
    """The level of a question ``solved`` times out of ``samples`` (see the module docstring).

    >>> [exec_difficulty(k, 10) for k in (0, 2, 3, 5, 6, 9, 10)]
    ['extra', 'extra', 'hard', 'hard', 'medium', 'medium', 'easy']
    >>> [exec_difficulty(k, 8) for k in (1, 2, 4, 5, 7, 8)]
    ['extra', 'hard', 'hard', 'medium', 'medium', 'easy']
    """
    if samples <= 0:
        raise ValueError("no samples: no execution difficulty")
    rate = Fraction(solved, samples)  # exact, so 5 of 10 is at the threshold, never above it by rounding
    for threshold, level in DATAFLOW_THRESHOLDS:
        if rate <= Fraction(threshold, DATAFLOW_SAMPLES):
            return level
    return "easy"
