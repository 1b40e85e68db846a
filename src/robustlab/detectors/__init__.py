"""Adversarial-input detection: the per-class KDE detector of Feinman et al. (2017) on penultimate
embeddings (PDM Sec. 4) and its metrics."""

from robustlab.detectors.kde import KDEDetector
from robustlab.detectors.metrics import detection_auc, detection_rate, roc

__all__ = ["KDEDetector", "detection_auc", "detection_rate", "roc"]
