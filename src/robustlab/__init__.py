"""robustlab: train, attack, detect and explain adversarially robust image classifiers."""

__version__ = "0.1.0"
