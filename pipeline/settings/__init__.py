"""Options → the stages' settings, one module per area of the command line.

``pipeline.config.resolve`` checks the inputs, databases and output, then asks these
modules for each stage's frozen ``*Settings``. Together they are the only code that reads
the parsed options (an ``argparse.Namespace``) or raises ``UserError``: the stages in
``transforms/`` receive settings, and their pure parsers (``parse_styles``,
``parse_formats``, ``parse_techniques``…) raise ``ValueError``, which the module here turns
into a one-line user error naming the option (``tests/unit/test_config_boundary.py``).

- ``llm``: the ``--llm*``, ``--weak_llm*`` and ``--consistency_llm*`` models, and their check;
- ``read``: the readers (``--sql_logs_format``, fields, ``--context``…);
- ``questions``: the question writer (``--llm``, ``--question_styles``…);
- ``training``: preference pairs and training exports (``--preference``, ``--format``…);
- ``generation``: synthesis, evolution, personas, teachings and the round-trip check;
- ``decontaminate``, ``judge``, ``evidence``, ``cot`` (with ``--sft_target``) and ``prompt_schema``:
  the reasoning-grade steps (``--decontaminate``, ``--judge``, ``--evidence``, ``--cot``,
  ``--prompt_schema``).
"""
