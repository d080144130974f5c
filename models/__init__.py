"""Networks, the checkpoint format, offline pretrained weights, training and evaluation.

``models.build`` constructs networks by name, ``models.checkpoint`` reads and writes the
checkpoint format, ``models.pretrained`` loads offline ImageNet weights, ``models.make_default``
regenerates the shipped default model in ``models/default/``.
"""

from __future__ import annotations

from pathlib import Path

#: The shipped default checkpoint (``model.checkpoint: default`` in the config).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "default" / "model.ckpt"

__all__ = ["DEFAULT_CHECKPOINT"]
