"""The bad-input suite: every bad file, path or disk gives one line, the right exit code, no partial file."""
