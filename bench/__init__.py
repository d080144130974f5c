"""Measuring harnesses (source checkout only; not part of the installed package)."""
