"""Tests of vlkge.reports (a package, so its conftest does not shadow tests/encoders/conftest)."""
