"""Pictures of a run: the searched cell, alpha over epochs, accuracy against latency."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from adabert_jax import io_utils


def _pyplot():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def _save(fig, path: str) -> None:
  plt = _pyplot()
  with io_utils.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=120)
  plt.close(fig)


def plot_cell(ops: Sequence[Sequence], num_nodes: int, depth: int, path: str,
              title: str = "") -> None:
  """Draws one cell: inputs c_{k-2}, c_{k-1}, the intermediate nodes, and each chosen edge
  labelled with its operation; the output is the weighted sum of the intermediate nodes."""
  plt = _pyplot()
  names = ["c$_{k-2}$", "c$_{k-1}$"] + [str(i) for i in range(num_nodes)]
  pos = {0: (0.0, 1.0), 1: (0.0, -1.0)}
  for i in range(num_nodes):
    pos[2 + i] = (1.5 + 1.3 * i, 0.9 * (1 if i % 2 == 0 else -1) * (0.4 + 0.2 * i))
  out = (1.5 + 1.3 * num_nodes, 0.0)
  fig, ax = plt.subplots(figsize=(2.2 + 1.5 * num_nodes, 3.6))
  for node, src, op in ops:
    (x0, y0), (x1, y1) = pos[src], pos[node]
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                arrowprops=dict(arrowstyle="->", color="tab:blue", shrinkA=14, shrinkB=14,
                                connectionstyle="arc3,rad=0.12"))
    ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.08, op, fontsize=8, ha="center",
            color="tab:blue", bbox=dict(fc="white", ec="none", alpha=0.8, pad=0.5))
  for i in range(num_nodes):
    (x0, y0) = pos[2 + i]
    ax.annotate("", xy=out, xytext=(x0, y0),
                arrowprops=dict(arrowstyle="->", color="grey", ls="--", shrinkA=14,
                                shrinkB=14))
  for node, (x, y) in pos.items():
    color = "lightgreen" if node < 2 else "lightyellow"
    ax.text(x, y, names[node], ha="center", va="center", fontsize=10,
            bbox=dict(boxstyle="circle", fc=color, ec="black"))
  ax.text(*out, "c$_k$", ha="center", va="center", fontsize=10,
          bbox=dict(boxstyle="round", fc="lightblue", ec="black"))
  ax.set_xlim(-0.6, out[0] + 0.6)
  ax.set_ylim(-1.6, 1.6)
  ax.axis("off")
  ax.set_title(title or f"searched cell, stacked K = {depth} times", fontsize=10)
  fig.tight_layout()
  _save(fig, path)


def plot_alpha_history(epochs: Sequence[int], op_probs_TEO: np.ndarray,
                       depth_probs_TK: np.ndarray, op_names: Sequence[str],
                       path: str) -> None:
  """Left: each op's probability averaged over edges, per epoch. Right: the depth
  distribution per epoch. op_probs_TEO is [epochs, edges, ops]."""
  plt = _pyplot()
  op_probs_TEO, depth_probs_TK = np.asarray(op_probs_TEO), np.asarray(depth_probs_TK)
  fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
  mean_TO = op_probs_TEO.mean(1)
  for o, name in enumerate(op_names):
    ax0.plot(epochs, mean_TO[:, o], label=name, ls="-" if o < 6 else "--")
  ax0.set_xlabel("epoch")
  ax0.set_ylabel("softmax(alpha), mean over edges")
  ax0.legend(fontsize=7, ncol=2)
  ax0.grid(alpha=0.3)
  for k in range(depth_probs_TK.shape[1]):
    ax1.plot(epochs, depth_probs_TK[:, k], label=f"K={k + 1}")
  ax1.set_xlabel("epoch")
  ax1.set_ylabel("softmax(alpha_K)")
  ax1.legend(fontsize=7, ncol=2)
  ax1.grid(alpha=0.3)
  fig.tight_layout()
  _save(fig, path)


def plot_accuracy_latency(points: Sequence[dict], metric_name: str, path: str) -> None:
  """points: [{name, latency_ms, score (None for speed-only models), params}]."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for p in points:
    if p.get("score") is None:
      ax.axvline(p["latency_ms"], color="grey", ls=":", lw=1)
      ax.text(p["latency_ms"], ax.get_ylim()[0], f" {p['name']}\n (speed only)",
              fontsize=8, color="grey", va="bottom")
    else:
      ax.scatter(p["latency_ms"], p["score"], s=40)
      ax.annotate(f"{p['name']} ({p['params'] / 1e6:.1f}M)", (p["latency_ms"], p["score"]),
                  textcoords="offset points", xytext=(5, 5), fontsize=8)
  ax.set_xscale("log")
  ax.set_xlabel("latency per batch of 128 (ms, log scale)")
  ax.set_ylabel(f"dev {metric_name}")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  _save(fig, path)
