"""The published numbers of the five papers robustlab implements, transcribed from their tables.

The tables of AGKD-BML (Wang et al., ICCV 2021), ATAT (Li et al.), PDM (Rozenberg, Elidan, El-
Yaniv), AAD (Wu et al., ACM TOMM 2022) and the Cascade paper (Na, Ko, Mukhopadhyay, ICLR 2018).
Nothing here is computed; each number is as printed (bold / underline marks dropped), in the paper's
own units (accuracy in percent, 0-100; AUC in [0, 1]; PDM's distortion d scaled to [0, 1]). None
marks a cell the paper leaves empty.

Columns carry our evaluation-suite labels (src/robustlab/eval/suites/papers.yaml, full.yaml) where
one exists; other columns keep a short label as the paper writes it, and the table's notes say
which. Rows are keyed by our recipe names; paper rows with no matching recipe are dropped and named
in the notes. `dataset` is robustlab's data set name, except "imagenet" for AAD's ImageNet-2012
results, which robustlab cannot load (kept because AAD Table 7 exists only there).

The Cascade paper's eps grid: its eps are in pixel units of 255, and its one-step adversarial
training draws eps from |N(0, max_e / 2)| clipped to [0, max_e], with max_e = 16 on CIFAR-10 and 32
on MNIST (Sec. 3.1, 3.3). Its columns are labelled "<attack> eps x<f>" with f = eps / max_e, so
x1 is the paper's training max_e (16/255 CIFAR-10, 32/255 MNIST), the convention of robustlab's
Cascade configs (defense.eps = max_e = the data set's eps). CIFAR-10's eps 2, 4, 8, 16 are x0.125,
x0.25, x0.5, x1 (x0.125 has no suite label; the suite's x2 has no paper column); MNIST's 16, 32 are
x0.5, x1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class PaperTable:
    key: str          # unique, e.g. "agkd_bml_t1_cifar10"
    paper: str        # "AGKD-BML (Wang et al., ICCV 2021)"
    table: str        # "Table 1"
    caption: str      # one line: what the table measures
    dataset: str      # robustlab data set name: "cifar10", "cifar100", "svhn", "mnist", "fashion-mnist"
    model: str        # as the paper says, e.g. "WRN-28-10", "ResNet-18", "ResNet-20"
    eps: str          # the paper's L-inf budget as text, e.g. "8/255", "0.3", "16/255"
    metric: str       # "accuracy %" or "AUC" or "distortion d" etc.
    columns: tuple[str, ...]  # OUR column labels
    rows: dict        # OUR recipe name -> {column label: number or None}; the paper's units
    notes: str = ""   # mapping decisions, paper's own row names, anything not transcribed and why


def _row(columns: tuple[str, ...], *values: float | None) -> dict[str, float | None]:
    """One paper row, its numbers in the printed order of `columns`."""
    if len(values) != len(columns):
        raise ValueError(f"{len(values)} numbers for {len(columns)} columns")
    return dict(zip(columns, values))


AGKD_BML = "AGKD-BML (Wang et al., ICCV 2021)"
ATAT = "ATAT (Li et al.)"
PDM = "PDM (Rozenberg, Elidan, El-Yaniv)"
AAD = "AAD (Wu et al., ACM TOMM 2022)"
CASCADE = "Cascade (Na, Ko, Mukhopadhyay, ICLR 2018)"

# ---------------------------------------------------------------------------------------------
# AGKD-BML Table 1, CIFAR-10 block: clean, FGSM, BIM(7), PGD(20), PGD(100), CW(20), CW(100), AA.
_AGKD_T1_C10 = ("clean", "FGSM", "BIM-7", "PGD-20", "PGD-100", "CW-20", "CW-100", "AutoAttack")
AGKD_BML_T1_CIFAR10 = PaperTable(
    key="agkd_bml_t1_cifar10", paper=AGKD_BML, table="Table 1 (CIFAR-10)",
    caption="White-box accuracy on CIFAR-10 under FGSM, BIM, PGD, CW and AutoAttack",
    dataset="cifar10", model="WRN-28-10", eps="8/255", metric="accuracy %",
    columns=_AGKD_T1_C10,
    rows={
        "standard": _row(_AGKD_T1_C10, 95.99, 31.39, 0.38, 0, 0, 0, 0, 0),
        "agkd_bml": _row(_AGKD_T1_C10, 91.99, 76.69, 73.81, 71.02, 70.72, 63.67, 62.55, 37.07),
        "madry": _row(_AGKD_T1_C10, 86.19, 62.42, 54.99, 45.57, 45.22, 46.26, 46.05, 44.04),
        "sml": _row(_AGKD_T1_C10, 86.21, 58.88, 52.60, 51.59, 46.62, 48.05, 47.39, 47.41),
        "agkd_bml_7": _row(_AGKD_T1_C10, 86.25, 70.06, 64.97, 57.30, 56.88, 53.36, 52.95, 50.59),
    },
    notes="Paper rows: UM -> standard, AGKD-BML (2-step training attack) -> agkd_bml, AT-7 -> madry, "
          "SML-7 -> sml, AGKD-BML-7 -> agkd_bml_7. Dropped (no recipe): Bilateral, FS (feature "
          "scattering), TRADES+CAS-10 and MART+CAS-10 (TRADES / MART with channel-wise activation "
          "suppressing, not our plain trades / mart). The table does not restate the test eps; "
          "training uses eps = 8 (Sec. 4.1) and the black-box test says eps = 8, so 8/255 is assumed. "
          "The text header of the block is garbled ('COLD D. 10 ... FAR-10'); it is the CIFAR-10 block.",
)

# AGKD-BML Table 1, SVHN block: its columns differ (BIM(10), MIM(40), no AA).
_AGKD_T1_SVHN = ("clean", "FGSM", "BIM-10", "PGD-20", "PGD-100", "CW-20", "CW-100", "MIM-40")
AGKD_BML_T1_SVHN = PaperTable(
    key="agkd_bml_t1_svhn", paper=AGKD_BML, table="Table 1 (SVHN)",
    caption="White-box accuracy on SVHN under FGSM, BIM, PGD, CW and MIM",
    dataset="svhn", model="WRN-28-10", eps="8/255", metric="accuracy %",
    columns=_AGKD_T1_SVHN,
    rows={
        "standard": _row(_AGKD_T1_SVHN, 96.36, 46.33, 1.54, 0.33, 0.22, 0.37, 0.24, 5.39),
        "madry": _row(_AGKD_T1_SVHN, 91.55, 67.13, 54.03, 45.64, 44.02, 47.14, 45.66, 52.13),
        "sml": _row(_AGKD_T1_SVHN, 83.95, 70.28, 57.58, 51.91, 49.81, 51.25, 49.31, 43.80),
        "agkd_bml": _row(_AGKD_T1_SVHN, 95.04, 89.32, 75.06, 74.94, 69.23, 69.85, 62.22, 76.86),
    },
    notes="Paper rows: UM -> standard, AT-7 -> madry, SML-7 -> sml, AGKD-BML -> agkd_bml (no "
          "AGKD-BML-7 row on SVHN). Dropped: Bilateral, FS, TRADES+CAS-10, MART+CAS-10. 'BIM-10' "
          "(BIM(10)) is not a suite label; the suite has BIM-7. eps 8/255 assumed as for CIFAR-10.",
)

# AGKD-BML Table 2: ablation on CIFAR-10 (same models as Table 1 for UM, AT, SML, AGKD-BML).
_AGKD_T2 = ("FGSM", "PGD-20", "CW-20")
AGKD_BML_T2_CIFAR10 = PaperTable(
    key="agkd_bml_t2_cifar10", paper=AGKD_BML, table="Table 2",
    caption="Ablation on CIFAR-10: accuracy of BML alone, AGKD alone and both",
    dataset="cifar10", model="WRN-28-10", eps="8/255", metric="accuracy %",
    columns=_AGKD_T2,
    rows={
        "standard": _row(_AGKD_T2, 31.39, 0, 0),
        "madry": _row(_AGKD_T2, 62.42, 45.57, 46.26),
        "sml": _row(_AGKD_T2, 58.88, 51.59, 48.05),
        "bml": _row(_AGKD_T2, 71.08, 60.51, 56.53),
        "agkd": _row(_AGKD_T2, 75.57, 65.93, 60.71),
        "agkd_bml": _row(_AGKD_T2, 76.69, 71.02, 63.67),
    },
    notes="Paper rows: UM -> standard, AT -> madry, SML -> sml, BML -> bml, AGKD -> agkd, AGKD-BML "
          "-> agkd_bml (the 2-step model; its numbers equal Table 1's AGKD-BML row).",
)

# AGKD-BML Table 3: black-box, PGD-20 examples from a naturally trained model (Sec. 4.4).
_AGKD_T3 = ("transfer PGD-20",)
AGKD_BML_T3_CIFAR10 = PaperTable(
    key="agkd_bml_t3_cifar10", paper=AGKD_BML, table="Table 3",
    caption="Black-box accuracy on CIFAR-10: PGD-20 examples crafted on a natural model",
    dataset="cifar10", model="WRN-28-10", eps="8/255", metric="accuracy %",
    columns=_AGKD_T3,
    rows={
        "madry": _row(_AGKD_T3, 85.4),
        "sml": _row(_AGKD_T3, 86.4),
        "agkd_bml": _row(_AGKD_T3, 90.75),
    },
    notes="'transfer PGD-20' is the full suite's label (PGD-20 from the standard model). Paper "
          "columns: AT -> madry, SML -> sml, AGKD-BML -> agkd_bml; dropped: FS 88.9, Bilateral 89.9. "
          "Not a table, so not transcribed as a cell: Sec. 4.5 reports 88.67% for AGKD-BML under a "
          "gradient-free attack [40] (Uesato et al. 2018, i.e. SPSA; settings not given), against "
          "71.02% under PGD-20.",
)

# ---------------------------------------------------------------------------------------------
# ATAT Table 1: CIFAR-10. FGSM(20) is the 20-iteration I-FGSM.
_ATAT_T1 = ("clean", "FGSM", "I-FGSM-20", "PGD-7", "PGD-20")
ATAT_T1_CIFAR10 = PaperTable(
    key="atat_t1_cifar10", paper=ATAT, table="Table 1",
    caption="White-box untargeted accuracy on CIFAR-10 under FGSM, I-FGSM and PGD",
    dataset="cifar10", model="Wide ResNet", eps="8/255", metric="accuracy %",
    columns=_ATAT_T1,
    rows={
        "standard": _row(_ATAT_T1, 95.01, 13.35, 0.00, 0.00, 0.00),
        "madry": _row(_ATAT_T1, 87.25, 56.22, 45.82, 49.70, 45.87),
        "alp": _row(_ATAT_T1, 86.52, 60.57, 46.17, 52.32, 46.28),
        "sml": _row(_ATAT_T1, 86.21, 58.88, 51.77, 53.87, 51.59),
        "atat": _row(_ATAT_T1, 91.89, 76.74, 63.98, 70.15, 63.81),
    },
    notes="Paper columns: Nominal accuracy -> clean, FGSM(1) -> FGSM, FGSM(20) -> I-FGSM-20, PGD(7), "
          "PGD(20). Rows: Standard -> standard, AT-PGD -> madry, ALP -> alp, TLA (Mao et al. 2019, "
          "the SML of AGKD-BML; its clean/FGSM/PGD-20 equal AGKD-BML's SML-7 row) -> sml, ATAT -> "
          "atat. Baselines are published numbers where possible (footnote 1). The paper says only "
          "'Wide ResNet' (no depth/width); training PGD-7, step 2/255.",
)

# ATAT Table 2: CIFAR-100; PGD(10) instead of PGD(7); baselines re-run by the authors, no TLA.
_ATAT_T2 = ("clean", "FGSM", "I-FGSM-20", "PGD-10", "PGD-20")
ATAT_T2_CIFAR100 = PaperTable(
    key="atat_t2_cifar100", paper=ATAT, table="Table 2",
    caption="White-box untargeted accuracy on CIFAR-100 under FGSM, I-FGSM and PGD",
    dataset="cifar100", model="Wide ResNet", eps="8/255", metric="accuracy %",
    columns=_ATAT_T2,
    rows={
        "standard": _row(_ATAT_T2, 78.68, 7.8, 0.00, 0.00, 0.00),
        "madry": _row(_ATAT_T2, 61.14, 29.24, 24.03, 24.82, 24.09),
        "alp": _row(_ATAT_T2, 66.04, 31.83, 26.65, 27.50, 26.60),
        "atat": _row(_ATAT_T2, 76.22, 62.65, 28.84, 35.03, 28.72),
    },
    notes="As Table 1 (Standard, AT-PGD, ALP, ATAT); 'PGD-10' is not a suite label. The authors "
          "recreated all baselines (footnote 2) and omit TLA.",
)

# ---------------------------------------------------------------------------------------------
# PDM, ResNet-56 throughout. One PaperTable per paper table and data set (one metric each).
# The MNIST tables carry what benchmarks/detection.py held as PAPER_MNIST (checked cell by cell).
_PDM_ROWS = "Paper rows: CE (Table 1) / Baseline (Tables 2-4) -> standard, RCE -> rce, " \
            "Siamese + RVL -> siamese_rvl (Table 1 only), PDM (ours) -> pdm."
_PDM_T1 = ("clean",)
PDM_T1_MNIST = PaperTable(
    key="pdm_t1_mnist", paper=PDM, table="Table 1 (MNIST)",
    caption="Accuracy on normal (clean) MNIST test images",
    dataset="mnist", model="ResNet-56", eps="none (clean)", metric="accuracy %",
    columns=_PDM_T1,
    rows={
        "standard": _row(_PDM_T1, 99.33),
        "rce": _row(_PDM_T1, 99.32),
        "siamese_rvl": _row(_PDM_T1, 99.37),
        "pdm": _row(_PDM_T1, 99.52),
    },
    notes=_PDM_ROWS,
)
PDM_T1_CIFAR10 = PaperTable(
    key="pdm_t1_cifar10", paper=PDM, table="Table 1 (CIFAR-10)",
    caption="Accuracy on normal (clean) CIFAR-10 test images",
    dataset="cifar10", model="ResNet-56", eps="none (clean)", metric="accuracy %",
    columns=_PDM_T1,
    rows={
        "standard": _row(_PDM_T1, 93.62),
        "rce": _row(_PDM_T1, 93.3),
        "siamese_rvl": _row(_PDM_T1, 94.37),
        "pdm": _row(_PDM_T1, 93.81),
    },
    notes=_PDM_ROWS + " Sec. 3.5 gives a Davies-Bouldin index of 0.23 for the combined method on "
          "CIFAR-10 embeddings (the others only in Fig. 2, not transcribed).",
)

# PDM Table 2: gray-box detection AUC (KDE on the embedding; attacker unaware of the detector).
_PDM_T2 = ("FGSM-0.05", "FGSM-0.1", "BIM-0.05", "BIM-0.1", "C&W", "C&W-hc", "JSMA")
_PDM_T2_NOTES = _PDM_ROWS + " No suite labels: the columns keep the paper's attack names (FGSM/BIM " \
    "at eps 0.05 and 0.1 on [0, 1] pixels, BIM 10 iterations; C&W L2 zero confidence; C&W-hc " \
    "confidence 10; JSMA), as benchmarks/detection.py labels them. Paper table is transposed " \
    "(attacks as rows)."
PDM_T2_MNIST = PaperTable(
    key="pdm_t2_mnist", paper=PDM, table="Table 2 (MNIST)",
    caption="Gray-box detection AUC on MNIST (attacker does not know the KDE detector)",
    dataset="mnist", model="ResNet-56", eps="0.05 / 0.1 (FGSM, BIM); C&W, JSMA unbounded",
    metric="AUC", columns=_PDM_T2,
    rows={
        "standard": _row(_PDM_T2, 0.981, 0.988, 0.983, 0.945, 0.994, 0.88, 0.995),
        "rce": _row(_PDM_T2, 0.983, 0.99, 0.967, 0.92, 1, 0.98, 1),
        "pdm": _row(_PDM_T2, 0.988, 0.995, 0.987, 0.99, 1, 1, 1),
    },
    notes=_PDM_T2_NOTES,
)
PDM_T2_CIFAR10 = PaperTable(
    key="pdm_t2_cifar10", paper=PDM, table="Table 2 (CIFAR-10)",
    caption="Gray-box detection AUC on CIFAR-10 (attacker does not know the KDE detector)",
    dataset="cifar10", model="ResNet-56", eps="0.05 / 0.1 (FGSM, BIM); C&W, JSMA unbounded",
    metric="AUC", columns=_PDM_T2,
    rows={
        "standard": _row(_PDM_T2, 0.958, 0.971, 1, 1, 0.874, 0.637, 0.952),
        "rce": _row(_PDM_T2, 0.898, 0.926, 0.99, 0.996, 0.918, 0.94, 0.96),
        "pdm": _row(_PDM_T2, 0.967, 0.983, 0.95, 0.962, 0.933, 1, 0.973),
    },
    notes=_PDM_T2_NOTES,
)

# PDM Table 3: white-box, mean L2 distortion d (per pixel, [0, 1] scale) C&W-wb needs to breach
# the detector (AUC <= 0.5); larger is better.
_PDM_T3 = ("white_d",)
_PDM_T3_NOTES = _PDM_ROWS + " 'white_d' (benchmarks/detection.py's label) is d = mean over " \
    "examples of ||x - x_adv||_2 / sqrt(n pixels) for C&W-wb."
PDM_T3_MNIST = PaperTable(
    key="pdm_t3_mnist", paper=PDM, table="Table 3 (MNIST)",
    caption="White-box: mean distortion C&W-wb needs to breach detection on MNIST (higher is better)",
    dataset="mnist", model="ResNet-56", eps="unbounded (C&W-wb, L2)", metric="distortion d",
    columns=_PDM_T3,
    rows={
        "standard": _row(_PDM_T3, 0.087),
        "rce": _row(_PDM_T3, 0.104),
        "pdm": _row(_PDM_T3, 0.162),
    },
    notes=_PDM_T3_NOTES,
)
PDM_T3_CIFAR10 = PaperTable(
    key="pdm_t3_cifar10", paper=PDM, table="Table 3 (CIFAR-10)",
    caption="White-box: mean distortion C&W-wb needs to breach detection on CIFAR-10 (higher is better)",
    dataset="cifar10", model="ResNet-56", eps="unbounded (C&W-wb, L2)", metric="distortion d",
    columns=_PDM_T3,
    rows={
        "standard": _row(_PDM_T3, 0.008),
        "rce": _row(_PDM_T3, 0.019),
        "pdm": _row(_PDM_T3, 0.026),
    },
    notes=_PDM_T3_NOTES,
)

# PDM Table 4: black-box detection AUC, C&W-wb from a ResNet-32 proxy distilled from the target.
_PDM_T4 = ("black_auc",)
_PDM_T4_NOTES = _PDM_ROWS + " 'black_auc' (benchmarks/detection.py's label): C&W-wb examples " \
    "crafted on a ResNet-32 proxy trained on the target's input-output pairs."
PDM_T4_MNIST = PaperTable(
    key="pdm_t4_mnist", paper=PDM, table="Table 4 (MNIST)",
    caption="Black-box detection AUC on MNIST (C&W-wb on a distilled proxy)",
    dataset="mnist", model="ResNet-56", eps="unbounded (C&W-wb, L2)", metric="AUC",
    columns=_PDM_T4,
    rows={
        "standard": _row(_PDM_T4, 0.88),
        "rce": _row(_PDM_T4, 0.94),
        "pdm": _row(_PDM_T4, 0.99),
    },
    notes=_PDM_T4_NOTES,
)
PDM_T4_CIFAR10 = PaperTable(
    key="pdm_t4_cifar10", paper=PDM, table="Table 4 (CIFAR-10)",
    caption="Black-box detection AUC on CIFAR-10 (C&W-wb on a distilled proxy)",
    dataset="cifar10", model="ResNet-56", eps="unbounded (C&W-wb, L2)", metric="AUC",
    columns=_PDM_T4,
    rows={
        "standard": _row(_PDM_T4, 0.93),
        "rce": _row(_PDM_T4, 0.933),
        "pdm": _row(_PDM_T4, 0.952),
    },
    notes=_PDM_T4_NOTES,
)

# ---------------------------------------------------------------------------------------------
# AAD Table 6: three blocks (MNIST / LeNet, Cifar10 / ResNet9, ImageNet2012 / ResNet50).
_AAD_T6 = ("clean", "FGSM", "PGD-10", "PGD-20", "PGD-40", "PGD-100", "CW-10", "CW-20", "CW-40", "CW-100")
_AAD_T6_NOTES = "Paper rows: RAW -> standard, Madry adv -> madry, Madry adv + AAD -> aad_madry, " \
    "Kannan ALP -> alp, Kannan ALP + AAD -> aad_alp. PGD-10, PGD-40, CW-10, CW-40 are not suite " \
    "labels. CW is L-inf bounded at the PGD eps (Sec. 5.3), i.e. PGD on the C&W margin like the " \
    "suite's cw_inf; PGD 'as Madry et al.', step sizes not restated."
AAD_T6_MNIST = PaperTable(
    key="aad_t6_mnist", paper=AAD, table="Table 6 (MNIST)",
    caption="White-box accuracy on MNIST under FGSM, PGD and CW of 10-100 steps",
    dataset="mnist", model="LeNet", eps="0.3", metric="accuracy %",
    columns=_AAD_T6,
    rows={
        "standard": _row(_AAD_T6, 99.18, 7.72, 0.49, 0.54, 0.64, 0.53, 0.0, 0.0, 0.0, 0.0),
        "madry": _row(_AAD_T6, 99.00, 96.92, 95.69, 95.52, 94.14, 92.49, 95.69, 92.69, 87.67, 85.17),
        "aad_madry": _row(_AAD_T6, 99.20, 97.12, 98.02, 96.81, 94.77, 93.02, 97.28, 95.04, 91.31, 89.77),
        "alp": _row(_AAD_T6, 98.61, 97.59, 98.23, 97.52, 96.04, 94.68, 96.96, 95.48, 93.18, 92.39),
        "aad_alp": _row(_AAD_T6, 98.52, 97.60, 98.24, 97.56, 96.11, 94.82, 97.18, 95.62, 93.54, 92.72),
    },
    notes=_AAD_T6_NOTES + " As printed, PGD-10 exceeds FGSM for aad_madry, alp and aad_alp.",
)
AAD_T6_CIFAR10 = PaperTable(
    key="aad_t6_cifar10", paper=AAD, table="Table 6 (Cifar10)",
    caption="White-box accuracy on CIFAR-10 under FGSM, PGD and CW of 10-100 steps",
    dataset="cifar10", model="ResNet9", eps="8/255", metric="accuracy %",
    columns=_AAD_T6,
    rows={
        "standard": _row(_AAD_T6, 90.51, 14.24, 5.93, 5.80, 5.97, 6.04, 0.0, 0.0, 0.0, 0.0),
        "madry": _row(_AAD_T6, 83.36, 63.28, 49.29, 45.25, 44.85, 44.72, 37.21, 36.27, 35.92, 35.79),
        "aad_madry": _row(_AAD_T6, 83.62, 64.98, 50.13, 48.99, 48.55, 48.49, 40.83, 39.90, 39.75, 39.64),
        "alp": _row(_AAD_T6, 82.80, 64.96, 52.79, 49.04, 48.81, 48.60, 41.35, 40.43, 40.11, 40.00),
        "aad_alp": _row(_AAD_T6, 80.50, 65.97, 53.43, 52.34, 52.14, 51.99, 43.32, 42.60, 42.43, 42.34),
    },
    notes=_AAD_T6_NOTES + " The paper writes the budget as '8pix'.",
)
AAD_T6_IMAGENET = PaperTable(
    key="aad_t6_imagenet", paper=AAD, table="Table 6 (ImageNet-2012)",
    caption="White-box accuracy on ImageNet-2012 under FGSM, PGD and CW of 10-100 steps",
    dataset="imagenet", model="ResNet50", eps="16/255", metric="accuracy %",
    columns=_AAD_T6,
    rows={
        "standard": _row(_AAD_T6, 75.60, 4.88, 0.50, 0.43, 0.42, 0.33, 3.28, 2.50, 1.93, 1.65),
        "madry": _row(_AAD_T6, 55.37, 9.49, 2.88, 0.46, 0.05, 0.0, 7.58, 3.58, 1.38, 0.28),
        "aad_madry": _row(_AAD_T6, 46.48, 11.47, 10.11, 5.29, 2.65, 1.3, 21.22, 19.73, 18.75, 18.05),
        "alp": _row(_AAD_T6, 50.68, 9.94, 23.67, 19.15, 14.89, 9.94, 26.15, 11.22, 6.3, 3.93),
        "aad_alp": _row(_AAD_T6, 47.06, 14.86, 29.15, 22.45, 17.56, 12.59, 37.40, 34.46, 32.90, 31.37),
    },
    notes=_AAD_T6_NOTES + " ImageNet is not a robustlab data set (dataset 'imagenet' only marks "
          "it); ResNet50 from an ImageNet-pretrained model, budget written '16pix'. As printed, "
          "PGD-10 exceeds FGSM for alp and aad_alp.",
)

# AAD Table 7: the attention-augmented attack (A3) against plain attacks, 3 iterations, eps 4/255,
# on I_att (the 38,245 ImageNet-2012 dev images InceptionV3 classifies correctly, Sec. 3.1).
_AAD_T7 = ("Iter-StepLL-3", "Iter-StepLL+A3-3", "PGD-3", "PGD+A3-3")
AAD_T7_IMAGENET = PaperTable(
    key="aad_t7_imagenet", paper=AAD, table="Table 7",
    caption="Accuracy on I_att under Iter-StepLL and PGD with and without the A3 attention loss",
    dataset="imagenet", model="InceptionV3", eps="4/255", metric="accuracy %",
    columns=_AAD_T7,
    rows={"standard": _row(_AAD_T7, 3.8, 3.3, 13.6, 10.8)},
    notes="One row, mapped to standard: Sec. 5.6 does not name the attacked model; I_att is built "
          "from the (undefended, pretrained) InceptionV3 of Sec. 3.1, assumed to be the target. "
          "Attack settings sigma = 10, eps = 4/255, 3 iterations; no suite labels (the suite's "
          "A3-PGD-20 is 20 steps at the data set's eps). The printed header is garbled ('Iter PGD' "
          "over the columns, 'PDG' for PGD). Not transcribed: AAD Tables 1-5 (attention IoU and "
          "confidence statistics, not robustness).",
)

# ---------------------------------------------------------------------------------------------
# Cascade. "step_II"/"iter_II" in the text are OCR for step_ll/iter_ll. Columns: see the module
# docstring (x1 = training max_e). Row order in _row: clean (eps 0), then each attack's eps grid.
def _grid(attacks: tuple[str, ...], factors: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{a} eps x{f}" for a in attacks for f in factors)


_ATTACKS = ("step_ll", "step_FGSM", "iter_ll", "iter_FGSM")
_CIFAR_F = ("0.125", "0.25", "0.5", "1")  # eps 2, 4, 8, 16 of 255; max_e = 16
_MNIST_F = ("0.5", "1")                    # eps 16, 32 of 255; max_e = 32
_CAS_CIFAR = ("clean", *_grid(_ATTACKS, _CIFAR_F))
_CAS_MNIST = ("clean", *_grid(_ATTACKS, _MNIST_F))
_CAS_EPS_NOTE = "Column eps are x (eps / max_e): training draws eps from |N(0, max_e/2)| clipped to " \
    "[0, max_e]; 'eps x0.125' (2/255) is not a suite label and the suite's 'eps x2' has no paper " \
    "column. Clean is the paper's eps 0 column (printed twice, equal)."

# Cascade Table 1: MNIST, all adversarially trained models use step_ll.
CASCADE_T1_MNIST = PaperTable(
    key="cascade_t1_mnist", paper=CASCADE, table="Table 1",
    caption="White-box accuracy on MNIST under step_ll, step_FGSM, iter_ll, iter_FGSM (eps 16, 32 of 255)",
    dataset="mnist", model="ResNet-20", eps="32/255", metric="accuracy %",
    columns=_CAS_MNIST,
    rows={
        "standard": _row(_CAS_MNIST, 99.6, 95.7, 30.2, 92.6, 29.7, 98.1, 66.2, 86.6, 7.5),
        "kurakin": _row(_CAS_MNIST, 99.6, 99.2, 96.7, 98.5, 94.1, 99.5, 97.9, 98.2, 87.9),
        "bidirection": _row(_CAS_MNIST, 99.5, 99.3, 98.8, 99.1, 98.4, 99.4, 99.1, 98.9, 96.5),
        "pivot": _row(_CAS_MNIST, 99.6, 99.4, 98.8, 99.1, 98.1, 99.5, 99.3, 98.8, 96.4),
    },
    notes="Paper rows: Baseline -> standard, Kurakin's -> kurakin, Bidirection (Ours) -> bidirection, "
          "Pivot (Ours) -> pivot, all trained with step_ll, max_e = 32 (eps 16 = x0.5, 32 = x1). "
          + _CAS_EPS_NOTE,
)

# Cascade Table 2: CIFAR-10, 20-layer ResNet.
CASCADE_T2_CIFAR10 = PaperTable(
    key="cascade_t2_cifar10", paper=CASCADE, table="Table 2",
    caption="White-box accuracy on CIFAR-10 under step_ll, step_FGSM, iter_ll, iter_FGSM (eps 2-16 of 255)",
    dataset="cifar10", model="ResNet-20", eps="16/255", metric="accuracy %",
    columns=_CAS_CIFAR,
    rows={
        "standard": _row(_CAS_CIFAR, 90.9, 44.5, 26.0, 14.2, 11.5, 28.7, 20.6, 15.7, 12.2,
                         47.7, 33.3, 12.5, 9.1, 14.0, 0.4, 0.0, 0.0),
        "kurakin": _row(_CAS_CIFAR, 91.0, 85.8, 86.7, 87.3, 84.4, 78.9, 83.3, 85.2, 81.5,
                        78.2, 65.1, 35.3, 16.8, 50.6, 9.8, 0.4, 0.0),
        "bidirection": _row(_CAS_CIFAR, 91.0, 86.1, 87.1, 88.3, 87.3, 78.7, 82.8, 88.0, 90.0,
                            76.6, 69.0, 41.8, 22.9, 52.0, 11.2, 0.2, 0.0),
        "pivot": _row(_CAS_CIFAR, 90.9, 86.2, 88.0, 89.0, 88.3, 79.7, 84.8, 90.0, 91.7,
                      76.3, 69.4, 41.3, 22.2, 52.0, 11.3, 0.2, 0.0),
    },
    notes="Paper rows: Baseline -> standard; step_ll Kurakin's -> kurakin, step_ll Bidirection (Ours) "
          "-> bidirection, step_ll Pivot (Ours) -> pivot (our recipes train on step_ll). Dropped: "
          "step_FGSM Kurakin's, step_FGSM Pivot (Ours), step_both Kurakin's, step_both Pivot (Ours). "
          "max_e = 16. " + _CAS_EPS_NOTE,
)

# Cascade Table 3: 20 networks per method (step_ll), mean and standard deviation.
_CAS_T3_MEAN = ("clean", "step_ll eps x0.25", "step_ll eps x1", "iter_ll eps x0.25", "iter_ll eps x1")
_CAS_T3 = (*_CAS_T3_MEAN, *(f"{c} std" for c in _CAS_T3_MEAN))
CASCADE_T3_CIFAR10 = PaperTable(
    key="cascade_t3_cifar10", paper=CASCADE, table="Table 3",
    caption="Mean and std of accuracy over 20 trained networks on CIFAR-10 (step_ll and iter_ll, eps 4, 16)",
    dataset="cifar10", model="ResNet-20", eps="16/255", metric="accuracy %",
    columns=_CAS_T3,
    rows={
        "kurakin": _row(_CAS_T3, 90.9, 86.1, 84.6, 64.2, 16.3, 0.25, 0.98, 2.89, 2.89, 2.02),
        "pivot": _row(_CAS_T3, 90.9, 87.3, 87.8, 69.4, 21.9, 0.25, 0.79, 0.82, 1.61, 1.85),
    },
    notes="Paper rows: Kurakin's -> kurakin, Pivot (Ours) -> pivot (step_ll training, a longer "
          "schedule: 120k iterations, footnote 7). The printed 'mean \u00b1 std' cells are split: "
          "the suite-labelled columns hold the mean, the '<label> std' columns (not suite labels) "
          "the standard deviation. eps 4 = x0.25, 16 = x1.",
)

# Cascade Table 4: black-box at eps 16 between networks of different initialisation.
_CAS_T4_SRC = ("B2", "K2", "P2")
_CAS_T4 = tuple(f"transfer {a} eps x1 from {s}" for a in ("step_FGSM", "iter_ll", "iter_FGSM")
                for s in _CAS_T4_SRC)
CASCADE_T4_CIFAR10 = PaperTable(
    key="cascade_t4_cifar10", paper=CASCADE, table="Table 4",
    caption="Black-box accuracy on CIFAR-10 at eps 16: targets B1/K1/P1, sources B2/K2/P2",
    dataset="cifar10", model="ResNet-20", eps="16/255", metric="accuracy %",
    columns=_CAS_T4,
    rows={
        "standard": _row(_CAS_T4, 16.2, 31.6, 29.1, 69.7, 82.6, 78.3, 2.7, 60.1, 54.4),
        "kurakin": _row(_CAS_T4, 66.7, 82.7, 79.4, 87.7, 83.5, 82.5, 55.8, 28.5, 28.5),
        "pivot": _row(_CAS_T4, 57.2, 89.2, 85.4, 87.8, 83.3, 82.3, 52.0, 24.3, 21.7),
    },
    notes="Rows are the target networks: B1 (Baseline) -> standard, K1 (Kurakin's) -> kurakin, P1 "
          "(Pivot, step_ll) -> pivot. Column labels (not suite labels) name the attack and the "
          "source network, a differently initialised copy: B2 = standard, K2 = kurakin, P2 = pivot. "
          "Not transcribed: appendix Tables 8-10 (the same kind of transfer matrix for other "
          "source/target pairs; Table 8's diagonal is white-box).",
)

# Cascade Table 5: cascade adversarial training, 20-layer ResNet.
_CAS_CASCADE_NOTES = "Paper rows: 'step_ll, P (Ours)' -> pivot (the Table 2 network), " \
    "'step_ll, saved_P2, P (Ours)' -> cascade (32 step_ll + 32 saved iter_FGSM images of P2, pivot " \
    "loss). Dropped: 'step_ll, saved_P2, K' (cascade training without the similarity loss; " \
    "robustlab's cascade with similarity: false, no recipe of its own). Our cascade config uses " \
    "the bidirectional distance (pivot: false), the paper's row the pivot loss. "
CASCADE_T5_CIFAR10 = PaperTable(
    key="cascade_t5_cifar10", paper=CASCADE, table="Table 5",
    caption="White-box accuracy on CIFAR-10 of cascade-trained 20-layer ResNets (eps 2-16 of 255)",
    dataset="cifar10", model="ResNet-20", eps="16/255", metric="accuracy %",
    columns=_CAS_CIFAR,
    rows={
        "pivot": _row(_CAS_CIFAR, 90.9, 86.2, 88.0, 89.0, 88.3, 79.7, 84.8, 90.0, 91.7,
                      76.3, 69.4, 41.3, 22.2, 52.0, 11.3, 0.2, 0.0),
        "cascade": _row(_CAS_CIFAR, 90.7, 84.6, 82.8, 79.4, 73.9, 80.5, 77.6, 72.7, 65.7,
                        82.2, 75.8, 67.1, 58.7, 67.0, 37.9, 20.1, 9.7),
    },
    notes=_CAS_CASCADE_NOTES + _CAS_EPS_NOTE,
)

# Cascade Table 6: the same training on 110-layer ResNets (saved images still from 20-layer P2).
CASCADE_T6_CIFAR10 = PaperTable(
    key="cascade_t6_cifar10", paper=CASCADE, table="Table 6",
    caption="White-box accuracy on CIFAR-10 of cascade-trained 110-layer ResNets (eps 2-16 of 255)",
    dataset="cifar10", model="ResNet-110", eps="16/255", metric="accuracy %",
    columns=_CAS_CIFAR,
    rows={
        "pivot": _row(_CAS_CIFAR, 92.3, 86.0, 86.8, 89.3, 89.4, 81.6, 84.5, 90.1, 91.6,
                      79.6, 66.2, 48.6, 34.1, 64.1, 20.9, 2.6, 0.1),
        "cascade": _row(_CAS_CIFAR, 91.4, 85.6, 83.9, 81.4, 76.8, 81.2, 79.3, 74.3, 67.2,
                        83.8, 77.8, 69.8, 61.6, 69.9, 45.9, 30.4, 19.5),
    },
    notes=_CAS_CASCADE_NOTES + "The saved iter_FGSM images come from the 20-layer P2. " + _CAS_EPS_NOTE,
)

# Cascade Table 7: black-box at eps 16 against cascade-trained targets; split by target depth.
_CAS_T7_SRC = ("B2", "K2", "P2", "K2_C", "P2_C", "K4_C", "P4_C")
_CAS_T7 = tuple(f"transfer {a} eps x1 from {s}" for a in ("step_FGSM", "iter_FGSM") for s in _CAS_T7_SRC)
_CAS_T7_NOTES = "Sources (column labels, not suite labels): B2 baseline, K2 Kurakin's, P2 Pivot " \
    "(20-layer, no cascade), K2_C / P2_C Kurakin's / Pivot with cascade training (20-layer), " \
    "K4_C / P4_C the same at 110 layers. "
CASCADE_T7_CIFAR10_R20 = PaperTable(
    key="cascade_t7_cifar10_r20", paper=CASCADE, table="Table 7 (20-layer targets)",
    caption="Black-box accuracy on CIFAR-10 at eps 16 of the 20-layer cascade-trained target",
    dataset="cifar10", model="ResNet-20", eps="16/255", metric="accuracy %",
    columns=_CAS_T7,
    rows={
        "cascade": _row(_CAS_T7, 61.3, 68.3, 65.1, 71.2, 73.9, 66.6, 71.5,
                        50.5, 69.0, 71.0, 50.3, 62.4, 77.1, 81.5),
    },
    notes="Target P1_C (Pivot with cascade training) -> cascade; dropped: target K1_C (cascade "
          "without similarity loss). " + _CAS_T7_NOTES,
)
CASCADE_T7_CIFAR10_R110 = PaperTable(
    key="cascade_t7_cifar10_r110", paper=CASCADE, table="Table 7 (110-layer targets)",
    caption="Black-box accuracy on CIFAR-10 at eps 16 of the 110-layer cascade-trained target",
    dataset="cifar10", model="ResNet-110", eps="16/255", metric="accuracy %",
    columns=_CAS_T7,
    rows={
        "cascade": _row(_CAS_T7, 71.8, 74.8, 72.7, 76.6, 75.4, 68.3, 74.4,
                        67.5, 77.5, 78.1, 66.8, 68.8, 80.2, 83.5),
    },
    notes="Target P3_C (110-layer Pivot with cascade training) -> cascade; dropped: target K3_C. "
          + _CAS_T7_NOTES,
)

TABLES: tuple[PaperTable, ...] = (
    AGKD_BML_T1_CIFAR10, AGKD_BML_T1_SVHN, AGKD_BML_T2_CIFAR10, AGKD_BML_T3_CIFAR10,
    ATAT_T1_CIFAR10, ATAT_T2_CIFAR100,
    PDM_T1_MNIST, PDM_T1_CIFAR10, PDM_T2_MNIST, PDM_T2_CIFAR10,
    PDM_T3_MNIST, PDM_T3_CIFAR10, PDM_T4_MNIST, PDM_T4_CIFAR10,
    AAD_T6_MNIST, AAD_T6_CIFAR10, AAD_T6_IMAGENET, AAD_T7_IMAGENET,
    CASCADE_T1_MNIST, CASCADE_T2_CIFAR10, CASCADE_T3_CIFAR10, CASCADE_T4_CIFAR10,
    CASCADE_T5_CIFAR10, CASCADE_T6_CIFAR10, CASCADE_T7_CIFAR10_R20, CASCADE_T7_CIFAR10_R110,
)


def tables_for(recipes: Iterable[str] | str) -> list[PaperTable]:
    """The tables with at least one row among `recipes`, in TABLES' order (AGKD-BML, ATAT, PDM,
    AAD, Cascade)."""
    wanted = {recipes} if isinstance(recipes, str) else set(recipes)
    return [t for t in TABLES if wanted & set(t.rows)]
