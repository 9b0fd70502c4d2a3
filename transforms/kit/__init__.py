"""What every stage family shares and that needs Beam or an adapter: the dead-letter tag and
counters (``stage``), the executors (``executors``), the databases' tables for prompts
(``catalog``), input files (``inputs``, ``ddl_files``), result equivalence (``equivalence``),
deterministic files (``write``) and the model stages' helpers.

Families import it; it imports no family. Importing any of it registers the record model's
types (``transforms.core.record``, which imports no Beam) with Beam's ``RowCoder``, so records
travel as schema'd rows; every stage module imports something from here.
"""

from apache_beam import coders

from transforms.core.record import DeadLetter, Execution, Parameter, Record

for _row_type in (Execution, Parameter, Record, DeadLetter):
    coders.registry.register_coder(_row_type, coders.RowCoder)
