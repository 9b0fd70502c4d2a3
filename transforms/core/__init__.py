"""The core every layer above the adapters shares: the record model (``record``), user errors
(``errors``) and the vocabularies (``vocab``). Pure: no stage, no adapter."""
