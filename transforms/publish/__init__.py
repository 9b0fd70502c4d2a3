"""Stage family publish: what the job writes (pairs, report, pages, training exports)."""
