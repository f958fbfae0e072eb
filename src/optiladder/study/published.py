"""Published numbers to compare with, from Grunert, Großmann & Runge, "Machine learning climbs the Jacob's
Ladder of optoelectronic properties", Nat. Commun. 16, 8142 (2025) (QE + Yambo spectra, ≤ 8 atoms, 4,610
training / 603 validation / 639 test materials). Medians over their test set; SC values read off their Fig. 3
(± 0.005). Our spectra are GPAW (gpaw-pbe-v1), so the numbers are a reference, not a target.
"""

from __future__ import annotations

CITATION = (
    "M. Grunert, M. Großmann, E. Runge, Machine learning climbs the Jacob's Ladder of optoelectronic "
    "properties, Nat. Commun. 16, 8142 (2025)"
)

#: training-set sizes of the paper's learning curve
SIZES: tuple[int, ...] = (100, 300, 1000, 3000, 4610)
#: median SC[RPA_ML; RPA_DFT] on the test set
MEDIAN_SC: dict[str, dict[int, float]] = {
    "dl": {100: 0.715, 300: 0.753, 1000: 0.827, 3000: 0.875, 4610: 0.900},
    "tl": {100: 0.833, 300: 0.863, 1000: 0.880, 3000: 0.893, 4610: 0.893},
}
#: median MSE[RPA_ML; RPA_DFT] on the test set
MEDIAN_MSE: dict[str, dict[int, float]] = {
    "dl": {100: 0.39, 300: 0.26, 1000: 0.16, 3000: 0.08, 4610: 0.052},
    "tl": {100: 0.135, 300: 0.10, 1000: 0.077, 3000: 0.06, 4610: 0.062},
}
#: "IPA spectrum as the RPA prediction": median SC[IPA_DFT; RPA_DFT] and MSE
IPA_BASELINE: dict[str, float] = {"median_sc": 0.69, "median_mse": 0.45}
#: TL on small cells only: max atoms → (approx. number of training materials, median test SC)
SMALL_CELLS: dict[int, tuple[int, float]] = {
    2: (75, 0.79),
    3: (300, 0.848),
    4: (1500, 0.870),
    5: (2300, 0.877),
    6: (2900, 0.885),
}
#: SC[RPA_DFT; IPA_DFT] predicted with a 1-value head
SC_PREDICTOR: dict[str, float] = {"mae": 0.026, "median_abs_error": 0.018}
#: fine-tuning settings of the paper
TRANSFER_SETTINGS: dict[str, float] = {"lr": 1e-5, "weight_decay": 1e-4, "batch_size": 128, "max_epochs": 500}
