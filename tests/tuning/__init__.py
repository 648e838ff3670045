"""Tests of vlkge.tuning (a package, so its conftest does not shadow another folder's)."""
