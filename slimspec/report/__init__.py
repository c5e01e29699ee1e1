"""Reports: spec summaries, diffs and tables. Torch-free."""
