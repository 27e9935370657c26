"""Everything Dagster sees: the assets, their jobs, partitions, automation and code versions, the
deployment's resources, and `definitions.defs` that assembles them (the code location).

The packages beside this one are pure (no Dagster, no `resources`); the assets here are thin glue
over them. `tests/test_layering.py` keeps the direction.
"""
