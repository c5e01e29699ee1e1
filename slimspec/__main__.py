"""``python -m slimspec`` (also ``torchrun --nproc_per_node N -m slimspec train ...``)."""
from .cli.main import main

main()
