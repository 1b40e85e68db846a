"""The five papers' claimed gains as comparisons a reproduction can check.

Each comparison says which (recipe, column) the paper finds higher. A reproduction measures both
cells and `verdicts.decide` tests them: *holds*, *reversed*, or *not resolved* (with the
difference the budget could detect). Columns are the report's labels (`papers` suite), "clean",
or a detection number ("gray AUC": the mean gray-box AUC, "white_d": the white-box distortion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    paper: str
    source: str               # where the paper shows it
    text: str
    higher: str               # recipe the paper finds higher
    lower: str
    columns: tuple[str, ...]  # each is compared on its own
    lower_column: str | None = None  # compare higher@column with lower@lower_column instead
    at_least: bool = False    # the paper claims "no worse": a gap within the noise holds
    extension: tuple[str, ...] = ()  # columns the paper did not measure (robustlab's own check)
    stands_in: str = ""       # how this comparison differs from the paper's, when it does


AA = ("AutoAttack",)
CLAIMS = (
    Claim("AGKD-BML", "Table 1", "AGKD-BML is more robust than PGD adversarial training", "agkd_bml", "madry",
          ("PGD-20",)),
    Claim("AGKD-BML", "Table 1", "AGKD-BML-7 is more robust than PGD adversarial training, under AutoAttack "
          "too (the 2-step AGKD-BML is not: 37.07 vs 44.04 in the paper)", "agkd_bml_7", "madry",
          ("PGD-20", "AutoAttack")),
    Claim("AGKD-BML", "Table 2", "attention distillation adds robustness to metric learning (AGKD-BML > BML)",
          "agkd_bml", "bml", ("PGD-20", *AA), extension=AA),
    Claim("AGKD-BML", "Table 2", "metric learning adds robustness to distillation (AGKD-BML > AGKD)",
          "agkd_bml", "agkd", ("PGD-20", *AA), extension=AA),
    Claim("AGKD-BML", "Table 2", "bidirectional metric learning beats single metric learning (BML > SML)",
          "bml", "sml", ("PGD-20", *AA), extension=AA),
    Claim("ATAT", "Table 1", "attention transfer is more robust than adversarial logit pairing", "atat",
          "alp", ("PGD-20", *AA), extension=AA),
    Claim("ATAT", "Table 1", "attention transfer is more robust than PGD adversarial training", "atat",
          "madry", ("PGD-20", *AA), extension=AA),
    Claim("AAD", "Table 6", "attention rectification + preservation improve PGD training", "aad_madry",
          "madry", ("PGD-20", "PGD-100", "CW-100", *AA), extension=AA),
    Claim("AAD", "Table 6", "attention rectification + preservation improve ALP", "aad_alp", "alp",
          ("PGD-20", "PGD-100", "CW-100", *AA), extension=AA),
    Claim("AAD", "Table 7", "A3 (PGD + attention deviation) is a stronger attack than PGD", "aad_madry",
          "aad_madry", ("PGD-20",), lower_column="A3-PGD-20",
          stands_in="the paper measures it on an undefended ImageNet InceptionV3 (3 steps, 4/255); here on "
                    "the AAD model, the defense A3 is meant to test"),
    Claim("PDM", "Table 1", "PDM training costs no clean accuracy", "pdm", "standard", ("clean",),
          at_least=True),
    Claim("PDM", "Table 2", "PDM makes gray-box attacks easier to detect than CE training", "pdm", "standard",
          ("gray AUC",), stands_in="the mean AUC over the gray-box attacks of Table 2"),
    Claim("PDM", "Table 2", "RCE makes gray-box attacks easier to detect than CE training", "rce", "standard",
          ("gray AUC",), stands_in="the mean AUC over the gray-box attacks of Table 2"),
    Claim("PDM", "Table 3", "PDM forces a white-box attacker to distort more than against CE", "pdm",
          "standard", ("white_d",)),
    Claim("Cascade", "Tables 1-2",
          "similarity learning beats Kurakin's one-step training on iterative attacks",
          "bidirection", "kurakin", ("iter_ll eps x1", *AA), extension=AA),
    Claim("Cascade", "Tables 1-2", "similarity learning keeps one-step robustness (bidirection >= Kurakin)",
          "bidirection", "kurakin", ("step_ll eps x1",), at_least=True),
    Claim("Cascade", "Table 5", "cascade training raises robustness to iterative attacks", "cascade",
          "bidirection", ("iter_ll eps x1", "iter_FGSM eps x1", *AA), extension=AA,
          stands_in="the paper compares with pivot, the similarity loss its cascade uses; ours uses the "
                    "bidirectional one (pivot diverges on small_cnn)"),
)


# Columns that are detection numbers from the detect report, not accuracies (PDM Tables 2-4, Fig. 2).
DETECTION = ("FGSM-0.05", "FGSM-0.1", "BIM-0.05", "BIM-0.1", "C&W", "C&W-hc", "JSMA", "gray AUC",
             "white_d", "black_auc", "davies_bouldin")
# Cells that are not a column of the papers suite: clean accuracy (the whole test split) and detection.
NOT_SUITE = ("clean", *DETECTION)


def compared_recipes() -> set[str]:
    """Every recipe a claim compares."""
    return {name for claim in CLAIMS for name in (claim.higher, claim.lower)}


def columns_of(recipe: str, extensions: bool = True) -> set[str]:
    """The papers-suite columns the claims read for `recipe` (the paper's own, and with
    `extensions` robustlab's checks the paper did not make)."""
    columns = set()
    for claim in CLAIMS:
        kept = [c for c in claim.columns if extensions or c not in claim.extension]
        if claim.higher == recipe:
            columns.update(kept)
        if claim.lower == recipe:
            columns.update(claim.lower_column or c for c in kept)
    return columns - set(NOT_SUITE)


def standard_error(value: float, images: int | None) -> float | None:
    """Binomial standard error of an accuracy in percent measured on `images` images."""
    if images is None or images <= 0:
        return None
    p = min(max(value / 100, 0.0), 1.0)
    return 100 * math.sqrt(p * (1 - p) / images)
