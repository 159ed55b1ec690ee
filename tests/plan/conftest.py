"""Tests of kiln.plan: `kiln plan` against the papers' own figures and hand arithmetic, and `kiln sweep`'s fits
against losses drawn from a known law.

Shared fixtures of these tests go here; helpers shared with other packages are in tests/helpers.py."""
