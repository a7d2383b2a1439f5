"""PNG plots for the model card: typical and worst forecasts on held-out generated data, and the
NAB series. Typical/worst are picked by the TFT's own P50 error per window, not by hand."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import schema  # noqa: E402

PLOT_TARGETS = ["cpu", "mem", "iowait", "net_in"]


def _window_errors(actual, p50):
    ok = np.isfinite(actual)
    err = np.where(ok, np.abs(actual - p50), 0.0).sum(-1)
    mag = np.where(ok, np.abs(actual), 0.0).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = err / np.maximum(mag, 1e-6)
    return np.where(ok.sum(-1) >= schema.HORIZON // 2, rel, np.nan)


def _panel(ax, series, origin, t, q, base_q, title):
    hist_idx = np.arange(origin - t + 1, origin + 1)
    fut_idx = np.arange(origin + 1, origin + schema.HORIZON + 1)
    hrs_h = (hist_idx - origin) / 12.0
    hrs_f = (fut_idx - origin) / 12.0
    ax.plot(hrs_h, series[hist_idx], color="0.35", lw=0.9, label="history")
    ax.plot(hrs_f, series[fut_idx], color="black", lw=0.9, label="actual")
    ax.fill_between(hrs_f, q[:, 0], q[:, 2], color="tab:blue", alpha=0.25, label="TFT P10-P90")
    ax.plot(hrs_f, q[:, 1], color="tab:blue", lw=1.3, label="TFT P50")
    if base_q is not None:
        ax.plot(hrs_f, base_q[:, 1], color="tab:orange", lw=1.0, ls="--", label="seasonal naive")
    ax.axvline(0, color="0.6", lw=0.6)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("hours from origin", fontsize=7)


def fleet_plots(arrays, t: int, server_names, out_typical: str, out_worst: str):
    actual, preds, series, origins, s = (arrays[k] for k in ("actual", "preds", "series", "origins", "s"))
    for path, pick in ((out_typical, "typical"), (out_worst, "worst")):
        fig, axes = plt.subplots(2, 2, figsize=(11, 6.5))
        for ax, tg in zip(axes.ravel(), PLOT_TARGETS):
            j = schema.TARGETS.index(tg)
            rows = slice(j * s, (j + 1) * s)
            err = _window_errors(actual[rows], preds["tft"][rows][..., 1])
            if not np.isfinite(err).any():
                ax.set_visible(False)
                continue
            flat = np.where(np.isfinite(err.ravel()), err.ravel(), np.nan)
            if pick == "worst":
                k = int(np.nanargmax(flat))
            else:
                med = np.nanmedian(flat)
                k = int(np.nanargmin(np.abs(flat - med)))
            si, oi = divmod(k, len(origins))
            _panel(ax, series[j * s + si], int(origins[oi]), t, preds["tft"][j * s + si, oi],
                   preds["seasonal_naive"][j * s + si, oi],
                   f"{tg} - {server_names[si]} ({pick}, rel. abs. error {flat[k]:.2f})")
        axes[0, 0].legend(fontsize=7, loc="upper left")
        fig.suptitle(f"{pick.capitalize()} TFT forecasts on held-out generated data (8 h horizon)", fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)


def nab_plot(nab_items, t: int, out: str,
             title: str = "TFT on the NAB CloudWatch series (final third, one origin each)"):
    """`nab_items`: list of (name, series [N], origin, tft q [H,3], seasonal q [H,3])."""
    n = len(nab_items)
    cols = 2
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(11, 3.0 * rows), squeeze=False)
    for ax, (name, series, origin, q, bq) in zip(axes.ravel(), nab_items):
        _panel(ax, series, origin, t, q, bq, name)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
