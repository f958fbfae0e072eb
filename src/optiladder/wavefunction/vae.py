"""A 3-D β-VAE of Kohn–Sham states |φ_nk(r)| (after Hou, Wu & Qiu, Nat. Commun. 2024), sized for a CPU.

Encoder (input ``[B, 1, g, g, g]``, any g):

* the **rotational layer**: one 3×3×3 circular convolution applied with its kernel under each of the 6
  permutations of the three lattice directions, max over them (the paper's max over lattice-direction choices,
  in 3-D): its output turns with the input under any permutation of the lattice vectors;
* circular-padded 3-D convolutions (periodic boundaries) whose kernels are tied to be symmetric under those
  permutations (so every layer commutes with them too), with dilations 2 and 4 for a receptive field of 15 grid
  steps without any strided step (every layer also commutes with a shift of the origin by whole grid steps),
  ReLU, then **global average pooling**, concatenated with a global max, of every layer's channels (both
  invariant, any grid size); with ``pooling="mean-max-cov"`` also the **second moments** of the last layer's
  channels, ``sqrt(mean_r f_i(r) f_j(r))`` for i ≤ j (bilinear pooling: equally invariant, since every channel
  moves with the input under shifts and permutations, but it keeps which features occur together at one place,
  which first-order pooling forgets);
* a dense layer to (μ, log σ²) of a ``latent``-dimensional Gaussian (log σ² starts at ``LOGVAR_INIT``).

``pooling="aligned"`` reaches the same invariance by canonicalisation instead of pooling: the input is first
brought to the frame (axis permutation × cyclic shift) in which a learnt linear basis explains it best
(:class:`AlignedBasis`, a generalised Procrustes PCA of the training states, stored with the model), the encoder
sees that aligned field and adds a linear path from its basis coefficients to μ, and the decoder returns the field
in the basis' frame as ``μ_basis + V·(linear map of z)`` plus a convolutional correction (no sigmoid, no skip
path: the output is not bounded to [0, 1]). Its nonlinear paths start at zero and its linear paths at the
identity (``latent ≥ n_basis``), so the untrained model *is* the aligned PCA; nothing in training protects that
start (measured: training neither helped nor hurt, to 1e-3 in R²). The code is invariant up to exact ties between
frames that give different aligned fields (the first frame in index order wins; for a basis without the
symmetry a field lacks, ties do not occur in practice). Measured in ``reports/wavefunction``: pooled invariants
lose what a frame-keeping code keeps (R² 0.71–0.75 on held-out materials), alignment does not (0.96).

Decoder (mirrored): dense → ``[2c, 4, 4, 4]`` → trilinear ×2 upsampling + circular conv + ReLU → the **adaptive
last layers**: trilinear interpolation to the input grid, a circular conv + ReLU and a circular conv to one
channel, plus a linear path (dense latent → 8³, interpolated to the input grid), then a sigmoid (inputs are scaled
to [0, 1], see :mod:`.data`).

**The loss is taken up to the symmetry the latent forgets.** The encoder is invariant under shifts of the origin
by whole grid steps and permutations of the lattice directions, so the code cannot say where in the cell, or in
which orientation, a state sits; a loss (or an R²) in the input's own frame asks the decoder for something the
code does not hold, and it answers with the average over the ambiguity (states at symmetry-equivalent k-points,
crystals whose origins differ by a sublattice shift). :func:`aligned_sq_err` (the squared error after the best
cyclic shift and axis permutation, by FFT cross-correlation) is the reconstruction term of the loss, and
:func:`aligned_r2` the R² the study reports beside the plain R². Loss: that MSE per voxel + β·KL (KL summed
over latent dimensions, averaged over the batch).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..pretrained import sha256_file

log = logging.getLogger(__name__)

#: grid of the decoder's linear path (interpolated to the input grid like the convolutional path)
SKIP_GRID = 8
#: initial log σ² of the posterior (bias of the encoder's last layer)
LOGVAR_INIT = -6.0
PERMS: tuple[tuple[int, int, int], ...] = tuple(itertools.permutations((0, 1, 2)))
#: encoder pooling: ``mean-max`` (global mean and max of every trunk layer's channels, the default) or
#: ``mean-max-cov`` (and the second moments of the last layer's channels; see the module doc)
#: or ``aligned`` (the input is first brought to its best frame against a learnt linear basis; see
#: :class:`AlignedBasis`)
POOLINGS = ("mean-max", "mean-max-cov", "aligned")
#: what each pooling adds to a model's folder name (:func:`~.study.vae_study`)
POOLING_SUFFIX = {"mean-max": "", "mean-max-cov": "-cov", "aligned": "-aligned"}
#: 2: pooled features of every trunk layer, decoder without the 16³ stage (version-1 folders do not load)
FORMAT_VERSION = 2


def permute_axes(x: torch.Tensor, perm: tuple[int, int, int]) -> torch.Tensor:
    """Permute the three spatial axes of ``[B, C, n1, n2, n3]``."""
    return x.permute(0, 1, *(2 + p for p in perm))


def _conv(cin: int, cout: int, dilation: int = 1) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, 3, padding=dilation, dilation=dilation, padding_mode="circular")


class SymConv3d(nn.Conv3d):
    """Circular 3×3×3 convolution whose kernel is the average of a free kernel over the 6 axis permutations
    (equivariant under permutations of the lattice directions, for cubic grids)."""

    def __init__(self, cin: int, cout: int, dilation: int = 1):
        super().__init__(cin, cout, 3, padding=dilation, dilation=dilation, padding_mode="circular")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = sum(self.weight.permute(0, 1, *(2 + q for q in p)) for p in PERMS) / len(PERMS)
        return self._conv_forward(x, w, self.bias)


class RotConv3d(nn.Conv3d):
    """The rotational layer: max over the 6 axis permutations of the kernel (equivariant, see the module doc)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 3, padding=1, padding_mode="circular")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.cat([self.weight.permute(0, 1, *(2 + q for q in p)) for p in PERMS], 0)
        y = self._conv_forward(x, w, self.bias.repeat(len(PERMS)))
        return y.view(len(x), len(PERMS), self.out_channels, *y.shape[2:]).max(1).values


class AlignedBasis(nn.Module):
    """A linear basis (mean ``μ`` and ``k`` orthonormal components ``V`` on one cubic grid) and the alignment of
    fields to it: the invariance mechanism of ``pooling="aligned"``.

    :meth:`align` returns, for each field x, the element g* of the group the latent must forget (6 axis
    permutations × all cyclic grid shifts) that minimises the residual ``‖g·x − μ‖² − ‖V(g·x − μ)‖²`` of the
    linear model, the aligned field g*·x and its coefficients ``V(g*·x − μ)``. A field and any shifted or
    permuted copy have the same group orbit, so they get the same aligned field and coefficients (exactly, up to
    exact ties between different frames): the code is invariant by canonicalisation rather than by pooling, and
    it keeps the whole field instead of summary statistics. The residual of every frame comes from
    ``k + 1`` circular cross-correlations by FFT per permutation.

    :meth:`fit` is a generalised Procrustes PCA: PCA of the training fields, align them to it, refit, repeat.
    """

    def __init__(self, grid: int, k: int):
        super().__init__()
        self.grid, self.k = grid, k
        self.register_buffer("mean", torch.zeros(grid**3))
        self.register_buffer("components", torch.zeros(k, grid**3))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, iterations: int = 2, chunk: int = 512) -> None:
        """Fit on fields ``[n, g, g, g]`` (training states only): PCA, then ``iterations`` rounds of
        align-and-refit."""
        xa = x
        for it in range(iterations + 1):
            flat = xa.reshape(len(xa), -1).double()
            mu = flat.mean(0)
            v = torch.linalg.svd(flat - mu, full_matrices=False)[2][: self.k]
            self.mean.copy_(mu.float())
            self.components.zero_()
            self.components[: len(v)] = v.float()
            if it < iterations:
                xa = torch.cat([self.align(x[i : i + chunk])[0] for i in range(0, len(x), chunk)])

    @torch.no_grad()
    def align(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(aligned fields ``[n, g, g, g]``, coefficients ``[n, k]``) of fields ``[n, g, g, g]``."""
        g = self.grid
        if tuple(x.shape[1:]) != (g, g, g):
            raise ValueError(f"aligned VAE: fields on a {g}³ grid expected, got {tuple(x.shape[1:])}")
        dims = (1, 2, 3)
        mu, v = self.mean.view(1, g, g, g), self.components.view(-1, g, g, g)
        f_mu = torch.fft.rfftn(mu, dim=dims).conj()
        f_v = torch.fft.rfftn(v, dim=dims).conj()
        v_mu = (self.components @ self.mean)[None, :, None, None, None]
        xx = (x**2).sum(dims)[:, None, None, None] + (self.mean**2).sum()
        best_r = best_x = None
        for p in PERMS:
            y = x.permute(0, *(1 + q for q in p))
            fy = torch.fft.rfftn(y, dim=dims)
            # <roll(y, -s), t> for every shift s, as one FFT cross-correlation per template t
            c_mu = torch.fft.irfftn(fy * f_mu, s=(g, g, g), dim=dims)
            c_v = torch.fft.irfftn(fy[:, None] * f_v[None], s=(g, g, g), dim=(2, 3, 4)) - v_mu
            res = (xx - 2 * c_mu - (c_v**2).sum(1)).flatten(1)
            r, idx = res.min(1)
            s0, s1, s2 = (idx // (g * g)), (idx // g) % g, idx % g
            ys = torch.stack(
                [
                    torch.roll(y[i], shifts=(-int(s0[i]), -int(s1[i]), -int(s2[i])), dims=(0, 1, 2))
                    for i in range(len(y))
                ]
            )
            if best_r is None:
                best_r, best_x = r, ys
            else:
                better = r < best_r
                best_r = torch.where(better, r, best_r)
                best_x[better] = ys[better]
        coef = (best_x.reshape(len(x), -1) - self.mean) @ self.components.T
        return best_x, coef

    def expand(self, coef: torch.Tensor) -> torch.Tensor:
        """μ + Σ coef_j V_j, ``[n, g, g, g]``."""
        g = self.grid
        return (self.mean + coef @ self.components).view(-1, g, g, g)


class StateVAE(nn.Module):
    """β-VAE of one real-space field per sample; ``channels`` sets the width, ``latent`` the code size."""

    def __init__(
        self,
        channels: int = 8,
        latent: int = 16,
        beta: float = 1e-6,
        pooling: str = "mean-max",
        grid: int | None = None,
        n_basis: int | None = None,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"VAE pooling {pooling!r}: expected one of {POOLINGS}")
        self.config = {"channels": channels, "latent": latent, "beta": beta}
        if pooling != "mean-max":  # folders of the default keep their config (and load as before)
            self.config["pooling"] = pooling
        if pooling == "aligned":
            if grid is None:
                raise ValueError("the aligned VAE needs its model grid (grid=...)")
            n_basis = latent if n_basis is None else n_basis
            if n_basis > latent:
                raise ValueError(
                    f"aligned VAE: n_basis {n_basis} > latent {latent} (the code must hold every coefficient the "
                    "alignment uses)"
                )
            self.config.update(grid=grid, n_basis=n_basis)
            self.basis = AlignedBasis(grid, n_basis)
            # linear paths: basis coefficients → μ of the code, code → basis coefficients (identity at the start
            # when latent == n_basis, so the untrained model is the aligned PCA; see fit_basis)
            self.coef_in = nn.Linear(n_basis, latent)
            self.coef_out = nn.Linear(latent, n_basis)
        self.pooling = pooling
        c = channels
        self.trunk = nn.Sequential(
            RotConv3d(1, c),
            nn.ReLU(),
            SymConv3d(c, 2 * c, 2),
            nn.ReLU(),
            SymConv3d(2 * c, 4 * c, 4),
            nn.ReLU(),
        )
        # pooled features of every trunk layer (c + 2c + 4c channels, mean and max each), and with "cov" the
        # 4c(4c + 1)/2 second moments of the last layer's channels
        n_feat = 14 * c + (2 * c * (4 * c + 1) if pooling == "mean-max-cov" else 0)
        self.to_stats = nn.Sequential(nn.Linear(n_feat, 8 * c), nn.ReLU(), nn.Linear(8 * c, 2 * latent))
        with (
            torch.no_grad()
        ):  # start with a narrow posterior (σ = e^-3): the decoder sees the code, not noise
            self.to_stats[-1].bias[latent:] = LOGVAR_INIT
        self.from_latent = nn.Linear(latent, 2 * c * 4**3)
        self.dec1 = _conv(2 * c, c)
        self.dec2 = _conv(c, c)
        self.last = _conv(c, 1)
        self.skip = nn.Linear(latent, SKIP_GRID**3)
        self.beta = beta
        self.latent = latent
        self.channels = c
        if pooling == "aligned":
            with torch.no_grad():  # the nonlinear paths start silent: the untrained model is the linear one
                self.to_stats[-1].weight.zero_()
                self.to_stats[-1].bias[:latent] = 0.0
                self.last.weight.zero_()
                self.last.bias.zero_()

    @torch.no_grad()
    def fit_basis(self, x: np.ndarray | torch.Tensor, iterations: int = 2) -> None:
        """``pooling="aligned"``: fit the alignment basis on training fields ``[n, g, g, g]`` (generalised
        Procrustes PCA, :meth:`AlignedBasis.fit`) and start the linear paths as identities, so that before any
        training the model encodes and decodes as that aligned PCA."""
        if self.pooling != "aligned":
            raise ValueError("fit_basis is for the aligned VAE")
        self.basis.fit(torch.as_tensor(np.asarray(x, dtype=np.float32)), iterations)
        self._start_linear_paths()

    @torch.no_grad()
    def untrained_copy(self) -> StateVAE:
        """``pooling="aligned"``: a fresh model on this model's fitted basis, as :meth:`fit_basis` leaves it
        before training (its linear paths identities, the nonlinear ones silent): the aligned PCA, without
        fitting the basis again."""
        if self.pooling != "aligned":
            raise ValueError("untrained_copy is for the aligned VAE")
        start = StateVAE(**self.config)
        start.basis.load_state_dict(self.basis.state_dict())
        start._start_linear_paths()
        return start.eval()

    @torch.no_grad()
    def _start_linear_paths(self) -> None:
        k, z = self.basis.k, self.latent
        eye = torch.eye(z, k)
        self.coef_in.weight.copy_(eye)
        self.coef_in.bias.zero_()
        self.coef_out.weight.copy_(eye.T)
        self.coef_out.bias.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Global average and global max of the channels of every trunk layer, ``[B, 14c]``, and with
        ``mean-max-cov`` pooling the square roots of the last layer's channel second moments (invariant, see the
        module doc)."""
        out = []
        h = x
        for layer in self.trunk:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                f = h.flatten(2)
                out += [f.mean(-1), f.amax(-1)]
        if self.pooling == "mean-max-cov":
            f = h.flatten(2)
            m = f @ f.transpose(1, 2) / f.shape[-1]  # [B, C, C], ≥ 0 (ReLU outputs)
            i, j = torch.triu_indices(m.shape[1], m.shape[2])
            out.append(torch.sqrt(m[:, i, j] + 1e-6))
        return torch.cat(out, -1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²), each ``[B, latent]``, of ``x`` ``[B, 1, g, g, g]``; the aligned VAE encodes the input
        in its best frame (:meth:`AlignedBasis.align`), plus a linear path from the basis coefficients."""
        if self.pooling == "aligned":
            xa, coef = self.basis.align(x[:, 0])
            mu, logvar = self.to_stats(self.features(xa[:, None])).chunk(2, dim=-1)
            return mu + self.coef_in(coef), logvar.clamp(-12, 8)
        mu, logvar = self.to_stats(self.features(x)).chunk(2, dim=-1)
        return mu, logvar.clamp(-12, 8)

    def decode(self, z: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``[B, 1, *grid]`` from codes ``[B, latent]``: in (0, 1) (sigmoid) for the pooled encoders; for
        ``pooling="aligned"`` the unbounded field in the basis' frame (linear model + convolutional correction)."""
        h = F.relu(self.from_latent(z)).view(len(z), 2 * self.channels, 4, 4, 4)
        h = F.relu(self.dec1(F.interpolate(h, scale_factor=2, mode="trilinear", align_corners=False)))
        h = F.interpolate(h, size=grid, mode="trilinear", align_corners=False)  # adaptive: to the input grid
        h = F.relu(self.dec2(h))
        if self.pooling == "aligned":  # the field in the basis' frame: linear model + a nonlinear correction
            if tuple(grid) != (self.basis.grid,) * 3:
                raise ValueError(f"aligned VAE decodes to its {self.basis.grid}³ grid, not {tuple(grid)}")
            return self.basis.expand(self.coef_out(z))[:, None] + self.last(h)
        lin = self.skip(z).view(len(z), 1, SKIP_GRID, SKIP_GRID, SKIP_GRID)
        lin = F.interpolate(lin, size=grid, mode="trilinear", align_corners=False)
        return torch.sigmoid(self.last(h) + lin)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decode(z, tuple(x.shape[2:])), mu, logvar

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        """(MSE + β·KL, MSE, KL) of a batch; the MSE is taken after the best grid shift and axis permutation
        (:func:`aligned_sq_err`), the symmetry the latent cannot see, per voxel."""
        recon, mu, logvar = self(x)
        mse = aligned_sq_err(recon, x).mean() / x[0].numel()
        kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1)).mean()
        return mse + self.beta * kl, float(mse.detach()), float(kl.detach())


def _batches(n: int, size: int, rng: np.random.Generator | None):
    idx = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, size):
        yield idx[i : i + size]


def train_vae(
    x_train: np.ndarray,
    *,
    channels: int = 8,
    latent: int = 16,
    beta: float = 1e-6,
    epochs: int = 30,
    batch_size: int = 8,
    lr: float = 3e-3,
    seed: int = 0,
    time_budget_s: float | None = None,
    pooling: str = "mean-max",
    n_basis: int | None = None,
) -> tuple[StateVAE, list[dict]]:
    """Train a :class:`StateVAE` on scaled states ``[n, g, g, g]`` (train-split materials only; the caller
    checks with :meth:`~.data.StateSet.check_trainable`). Adam, cosine learning rate; returns (model, history).

    The cosine runs over the training's progress ``p = max(epochs done / epochs, seconds / time_budget_s)``, and
    training stops at ``p ≥ 1``: with a time budget the learning rate still decays to its floor (0.1·lr) by the
    last epoch, rather than the run being cut at a high learning rate."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if pooling == "aligned":
        model = StateVAE(channels, latent, beta, pooling, grid=x_train.shape[-1], n_basis=n_basis)
        model.fit_basis(x_train)  # training states only
    else:
        model = StateVAE(channels, latent, beta, pooling)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt = torch.from_numpy(np.ascontiguousarray(x_train[:, None], dtype=np.float32))
    history = []
    t0 = time.time()
    progress = 0.0
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(lr, progress)
        model.train()
        tot = mse_sum = kl_sum = 0.0
        for idx in _batches(len(xt), batch_size, rng):
            loss, mse, kl = model.loss(xt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += len(idx)
            mse_sum += mse * len(idx)
            kl_sum += kl * len(idx)
        secs = time.time() - t0
        history.append(
            {
                "epoch": epoch,
                "mse": mse_sum / tot,
                "kl": kl_sum / tot,
                "lr": opt.param_groups[0]["lr"],
                "seconds": secs,
            }
        )
        log.info("epoch %d mse %.5f kl %.2f (%.0f s)", epoch, mse_sum / tot, kl_sum / tot, secs)
        progress = (epoch + 1) / max(epochs, 1)
        if time_budget_s is not None:
            # the next epoch should not overrun the budget: count it at the mean epoch time so far
            progress = max(progress, (secs + secs / (epoch + 1)) / time_budget_s)
            if progress > 1 and epoch + 1 < epochs:
                log.warning("time budget reached after %d epochs", epoch + 1)
                break
    model.eval()
    return model, history


def _cosine_lr(lr: float, progress: float) -> float:
    """Cosine from ``lr`` (progress 0) to ``0.1·lr`` (progress ≥ 1)."""
    p = min(max(progress, 0.0), 1.0)
    return 0.1 * lr + 0.9 * lr * 0.5 * (1.0 + float(np.cos(np.pi * p)))


@torch.no_grad()
def encode_states(model: StateVAE, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """μ of every state ``[n, g, g, g]`` → ``[n, latent]`` (eval mode)."""
    model.eval()
    out = [
        model.encode(torch.from_numpy(np.ascontiguousarray(x[i][:, None])))[0]
        for i in _batches(len(x), batch_size, None)
    ]
    return torch.cat(out).numpy()


@torch.no_grad()
def reconstruct(model: StateVAE, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Decoded μ of every state, same shape as ``x``."""
    model.eval()
    out = []
    for i in _batches(len(x), batch_size, None):
        xb = torch.from_numpy(np.ascontiguousarray(x[i][:, None]))
        out.append(model.decode(model.encode(xb)[0], tuple(xb.shape[2:]))[:, 0])
    return torch.cat(out).numpy()


def aligned_sq_err(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error of each reconstruction after the best element of the group the latent forgets.

    ``min over the 6 axis permutations p and all cyclic shifts s of Σ_r (roll(p·recon, s) − target)²``, per
    sample, for ``[B, g, g, g]`` or ``[B, 1, g, g, g]`` (cubic grids); shape ``[B]``. The shift search is one
    circular cross-correlation by FFT per permutation (``‖a‖² + ‖b‖² − 2 max_s corr(a, b)(s)``), so it costs 6
    FFTs of the grid per sample. Differentiable (the gradient flows through the best alignment).
    """
    if recon.dim() == 5:
        recon, target = recon[:, 0], target[:, 0]
    dims = (1, 2, 3)
    ft = torch.fft.rfftn(target, dim=dims)
    norm_t = (target**2).sum(dims)
    best = None
    for p in PERMS:
        y = recon.permute(0, *(1 + q for q in p))
        corr = torch.fft.irfftn(ft * torch.fft.rfftn(y, dim=dims).conj(), s=target.shape[1:], dim=dims)
        err = (y**2).sum(dims) + norm_t - 2 * corr.flatten(1).amax(1)
        best = err if best is None else torch.minimum(best, err)
    return best.clamp_min(0)


def aligned_r2(target: np.ndarray, recon: np.ndarray) -> float:
    """R² up to the symmetry the latent forgets: 1 − Σ_i min_g ‖g·recon_i − target_i‖² / Σ (y − ȳ)², g over axis
    permutations × cyclic grid shifts (:func:`aligned_sq_err`); shapes ``[n, g, g, g]``, ȳ the mean over all."""
    y = np.asarray(target, dtype=np.float32)
    ss_tot = float(((y.astype(np.float64) - y.mean(dtype=np.float64)) ** 2).sum())
    if ss_tot == 0:
        raise ValueError("R² undefined for a constant target")
    with torch.no_grad():
        ss_res = sum(
            float(
                aligned_sq_err(
                    torch.from_numpy(np.asarray(recon[i], np.float32)), torch.from_numpy(y[i])
                ).sum()
            )
            for i in _batches(len(y), 256, None)
        )
    return 1.0 - ss_res / ss_tot


def save_vae(model: StateVAE, out: str | Path, card: dict) -> Path:
    """``out/config.json``, ``out/weights.pt`` (float32 state_dict) and ``out/card.json`` (with the SHA-256)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".weights.pt.tmp"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(out / "weights.pt")
    (out / "config.json").write_text(
        json.dumps({"format_version": FORMAT_VERSION, "class": "StateVAE", "kwargs": model.config}, indent=1)
        + "\n"
    )
    card = {
        **card,
        "weights": {
            "file": "weights.pt",
            "sha256": sha256_file(out / "weights.pt"),
            "n_parameters": int(sum(p.numel() for p in model.parameters())),
        },
    }
    (out / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    return out


def load_vae(path: str | Path) -> tuple[StateVAE, dict]:
    """Load a folder written by :func:`save_vae` (checksum verified, ``weights_only=True``, strict)."""
    path = Path(path)
    try:
        config = json.loads((path / "config.json").read_text())
        card = json.loads((path / "card.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a VAE folder ({type(exc).__name__}: {exc})") from None
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: VAE format version {config.get('format_version')}, this code reads {FORMAT_VERSION} "
            "(retrain with `optiladder wavefunction train`)"
        )
    if sha256_file(path / "weights.pt") != card.get("weights", {}).get("sha256"):
        raise ValueError(f"{path}: weights.pt does not match the checksum in card.json")
    model = StateVAE(**config["kwargs"])
    model.load_state_dict(torch.load(path / "weights.pt", map_location="cpu", weights_only=True), strict=True)
    model.eval()
    return model, card
