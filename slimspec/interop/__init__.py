"""Bring models from other libraries into slimspec specs (torchvision today)."""
