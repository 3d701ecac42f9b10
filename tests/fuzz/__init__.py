"""Fuzz tests of the readers (hypothesis), kept fast: the long campaign is benchmarks/fuzz_readers.py."""
