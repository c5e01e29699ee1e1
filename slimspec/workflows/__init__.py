"""Workflows above pruning and training: the demo pipeline, sensitivity analysis, benchmarks."""
