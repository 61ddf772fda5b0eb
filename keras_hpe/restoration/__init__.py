"""Restoration of predicted label maps against a dictionary of synthetic patches (paper 3.1, 3.2, 5.1).

- patches.py  P x P label patches, one-hot encoding, de-duplication
- index.py    the Annoy Hamming dictionary: `build_dictionary`, `PatchIndex` (eq. 1)
- voting.py   `integrate_votes` (eq. 2) and the centre-label baseline
- crf.py      the CRF variants (Potts, patch overlap) by loopy belief propagation
- quality.py  `barycenter_quality` and the accept/reject gate
- restore.py  `restore_frames`: many frames, in parallel worker processes

Names are imported lazily: restoration workers then load NumPy and Annoy only,
not TensorFlow (which quality.py pulls in through the crop geometry).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "extract_patches": "patches",
    "unique_patches": "patches",
    "encode_onehot": "patches",
    "build_dictionary": "index",
    "DictionaryMeta": "index",
    "PatchIndex": "index",
    "exact_nearest": "index",
    "integrate_votes": "voting",
    "center_labels": "voting",
    "crf_restore": "crf",
    "barycenter_quality": "quality",
    "barycenter_qualities": "quality",
    "accept_restored": "quality",
    "gate_restorations": "quality",
    "QualityGate": "quality",
    "restore_frames": "restore",
    "METHODS": "restore",
    "restore_dataset": "pseudo_labels",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
