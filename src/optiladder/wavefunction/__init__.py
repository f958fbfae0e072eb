"""The wavefunction rung: a β-VAE of Kohn–Sham states and G0W0 corrections from its latent space.

:mod:`.data` (no torch): states of wavefunction exports on a model grid, splits, R²; :mod:`.vae` (torch): the
model, training, encoding, save/load; :mod:`.downstream`: [ε_DFT, state latent, density latent] → ε_QP − ε_DFT.
After Hou, Wu & Qiu, Nat. Commun. (2024), doi:10.1038/s41467-024-53748-7.
"""
