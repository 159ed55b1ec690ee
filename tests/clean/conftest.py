"""Tests of kiln.clean: the cleaning steps against their reference definitions (datatrove's rules, FineWeb's
thresholds) and the runner on its executors (local processes, Ray).

Shared fixtures of these tests go here; helpers shared with other packages are in tests/helpers.py."""
