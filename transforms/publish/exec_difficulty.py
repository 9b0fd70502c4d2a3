"""Execution-based difficulty: how often a model's samples solve a question, as a level.

Spider's hardness (``transforms.sql.hardness``) reads the SQL; this reads a model. Where a
stage has N independent samples of a model answering a pair's question, the share whose
result equals the gold result is the pair's *solve rate*, and its level follows OpenDCAI
DataFlow's ``SQLExecutionClassifier``: 10 samples, thresholds 2/5/9 on the number solved,
labels extra/hard/medium/easy::

    solved of 10   0-2     3-5    6-9      10
    level          extra   hard   medium   easy

With N samples other than 10 the same cut points apply to the rate (solved / N):
``rate <= 0.2`` extra, ``<= 0.5`` hard, ``<= 0.9`` medium, else easy — identical to
DataFlow's at N = 10. The levels use Spider's names, so ``--stage_by exec_difficulty``
writes the same staged sets (``pairs-easy`` ...) as ``--stage_by difficulty``.

Two stages have samples, and both write ``extra["solve_rate"]`` (text, e.g. ``"0.75"``) and
``extra["exec_difficulty"]`` on the pairs:

* ``--cot N`` (``transforms.publish.cot``): the N solutions; solved = those whose result is
  the gold's, out of N. A solution that did not run counts as not solved (DataFlow's
  denominator is ``num_generations`` too).
* ``--preference`` (``transforms.publish.preference``): the ``--samples`` weak-model answers;
  solved = those labelled ``correct``, out of every *counted* sample: all of them but the
  ``unlabelled`` ones. A sample is ``unlabelled`` when the gold itself could not be re-run
  or the database was unavailable, so nothing was compared: that says nothing about the
  model, and a question all of whose samples are unlabelled (its gold failed) gets no solve
  rate. Every other label counts, as in DataFlow: ``wrong_result``, ``exec_error``,
  ``timeout``, ``unparseable`` and ``no_reply`` (the model gave no SQL) are not solved. The
  weak model's rate is also ``extra["weak_solve_rate"]`` and its level
  ``extra["weak_exec_difficulty"]``; with ``--cot`` as well, ``solve_rate`` and
  ``exec_difficulty`` stay the ``--cot`` ones (a pair that already has them keeps them) and
  the weak model's stay beside them.
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
