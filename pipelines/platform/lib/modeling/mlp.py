"""An MLP with embeddings for categorical features, in PyTorch.

Uses CUDA when available (bf16 autocast there), the CPU otherwise. Tabular data is small next to
the device's memory, so the encoded tensors move to the device once and batches are sliced there:
no per-batch host-to-device copy, no worker processes, nothing for the GPU to wait on.
"""

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from pipelines.platform.lib.modeling.base import TrainResult
from pipelines.platform.lib.modeling.params import MlpParams

FAMILY = "torch"


class TabularEncoder:
    """Categoricals -> vocabulary indices (0 = unknown or missing); numerics -> standardized, with
    missing values filled by the training median and flagged in an indicator column."""

    def __init__(self, state: dict):
        self.state = state

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, categorical: list[str], numeric: list[str]
    ) -> "TabularEncoder":
        vocab = {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in categorical}
        stats = {}
        for c in numeric:
            values = frame[c].to_numpy(dtype="float64")
            finite = values[np.isfinite(values)]
            median = float(np.median(finite)) if finite.size else 0.0
            filled = np.where(np.isfinite(values), values, median)
            std = float(filled.std()) or 1.0
            stats[c] = {
                "median": median,
                "mean": float(filled.mean()),
                "std": std,
                "flag_missing": bool((~np.isfinite(values)).any()),
            }
        return cls({"vocab": vocab, "numeric": stats})

    @property
    def cardinalities(self) -> list[int]:
        return [len(v) + 1 for v in self.state["vocab"].values()]

    @property
    def numeric_width(self) -> int:
        stats = self.state["numeric"].values()
        return len(stats) + sum(s["flag_missing"] for s in stats)

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        codes = [
            pd.Categorical(frame[c].astype(object), categories=vocab).codes.astype("int64") + 1
            for c, vocab in self.state["vocab"].items()
        ]
        columns, flags = [], []
        for c, s in self.state["numeric"].items():
            values = frame[c].to_numpy(dtype="float64")
            missing = ~np.isfinite(values)
            columns.append((np.where(missing, s["median"], values) - s["mean"]) / s["std"])
            if s["flag_missing"]:
                flags.append(missing.astype("float64"))
        cat = np.stack(codes, axis=1) if codes else np.zeros((len(frame), 0), dtype="int64")
        num = np.stack(columns + flags, axis=1).astype("float32")
        return cat, num


class TabularMlp(nn.Module):
    def __init__(self, cardinalities: list[int], numeric_width: int, hidden, dropout: float):
        super().__init__()
        self.embeddings = nn.ModuleList(
            nn.Embedding(n, min(16, (n + 1) // 2 + 1)) for n in cardinalities
        )
        width = numeric_width + sum(e.embedding_dim for e in self.embeddings)
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        parts = [emb(cat[:, i]) for i, emb in enumerate(self.embeddings)] + [num]
        return self.body(torch.cat(parts, dim=1)).squeeze(1)


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch.cuda.is_available() is False")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


class MlpClassifier:
    family = FAMILY

    def __init__(self, encoder: TabularEncoder, network: TabularMlp, architecture: dict, features):
        self.encoder = encoder
        self.network = network.eval()
        self.architecture = architecture
        self.features = list(features)

    @torch.no_grad()
    def predict_proba(self, frame: pd.DataFrame, batch_size: int = 65536) -> np.ndarray:
        cat, num = self.encoder.transform(frame[self.features])
        device = next(self.network.parameters()).device
        out = []
        for start in range(0, len(frame), batch_size):
            logits = self.network(
                torch.from_numpy(cat[start : start + batch_size]).to(device),
                torch.from_numpy(num[start : start + batch_size]).to(device),
            )
            out.append(torch.sigmoid(logits.float()).cpu().numpy())
        return np.concatenate(out).astype("float64") if out else np.zeros(0)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.network.cpu().state_dict(), directory / "state_dict.pt")
        (directory / "encoding.json").write_text(
            json.dumps(
                {
                    "encoder": self.encoder.state,
                    "architecture": self.architecture,
                    "features": self.features,
                }
            )
        )

    @classmethod
    def load(cls, directory: Path) -> "MlpClassifier":
        meta = json.loads((directory / "encoding.json").read_text())
        encoder = TabularEncoder(meta["encoder"])
        arch = meta["architecture"]
        network = TabularMlp(
            encoder.cardinalities, encoder.numeric_width, arch["hidden"], arch["dropout"]
        )
        network.load_state_dict(torch.load(directory / "state_dict.pt", map_location="cpu"))
        return cls(encoder, network, arch, meta["features"])


def _log_loss(y: torch.Tensor, logits: torch.Tensor) -> float:
    return float(nn.functional.binary_cross_entropy_with_logits(logits.float(), y).item())


def _auc(y: torch.Tensor, logits: torch.Tensor) -> float:
    """Validation ROC AUC of an epoch (the curve a tuning trial prunes on); NaN for one class."""
    from sklearn.metrics import roc_auc_score

    labels = y.cpu().numpy()
    if labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, logits.float().cpu().numpy()))


def deterministic_cpu() -> None:
    """Deterministic kernels where PyTorch offers them (a model is then rebuilt bit for bit on
    the same machine and thread count; `flightline reproduce` states its tolerance)."""
    torch.use_deterministic_algorithms(True, warn_only=True)


def train_mlp(
    train_x: pd.DataFrame,
    train_y: np.ndarray,
    valid_x: pd.DataFrame,
    valid_y: np.ndarray,
    categorical: list[str],
    params: MlpParams,
    on_epoch=None,
) -> TrainResult:
    """Mini-batch AdamW; keeps the weights of the epoch with the best validation log loss."""
    torch.manual_seed(params.seed)
    np.random.seed(params.seed)
    device = pick_device(params.device)
    if device.type == "cpu":
        deterministic_cpu()
    numeric = [c for c in train_x.columns if c not in categorical]
    encoder = TabularEncoder.fit(train_x, categorical, numeric)
    architecture = {"hidden": list(params.hidden), "dropout": params.dropout}
    network = TabularMlp(
        encoder.cardinalities, encoder.numeric_width, params.hidden, params.dropout
    )
    network.to(device)
    tensors = {}
    for name, frame, y in (("train", train_x, train_y), ("valid", valid_x, valid_y)):
        cat, num = encoder.transform(frame)
        tensors[name] = (
            torch.from_numpy(cat).to(device),
            torch.from_numpy(num).to(device),
            torch.from_numpy(np.asarray(y, dtype="float32")).to(device),
        )
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    use_amp = device.type == "cuda"
    generator = torch.Generator(device=device).manual_seed(params.seed)
    history: dict[str, list[float]] = {
        "train_loss": [],
        "valid_loss": [],
        "valid_auc": [],
        "epoch_seconds": [],
    }
    best = (float("inf"), -1, None)
    cat_t, num_t, y_t = tensors["train"]
    n = len(y_t)
    started = time.perf_counter()
    for epoch in range(params.max_epochs):
        network.train()
        epoch_started = time.perf_counter()
        order = torch.randperm(n, device=device, generator=generator)
        total = torch.zeros((), device=device)
        for start in range(0, n, params.batch_size):
            idx = order[start : start + params.batch_size]
            if len(idx) < 2:  # BatchNorm needs two rows
                continue
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = network(cat_t[idx], num_t[idx])
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), y_t[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(idx)
        network.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            valid_logits = network(tensors["valid"][0], tensors["valid"][1])
        valid_loss = _log_loss(tensors["valid"][2], valid_logits)
        history["train_loss"].append(float(total.item()) / n)
        history["valid_loss"].append(valid_loss)
        history["valid_auc"].append(_auc(tensors["valid"][2], valid_logits))
        history["epoch_seconds"].append(time.perf_counter() - epoch_started)
        if on_epoch is not None:
            on_epoch(epoch, history)
        if valid_loss < best[0] - 1e-5:
            state = {k: v.detach().clone() for k, v in network.state_dict().items()}
            best = (valid_loss, epoch, state)
        elif epoch - best[1] >= params.patience:
            break
    seconds = time.perf_counter() - started
    network.load_state_dict(best[2])
    epochs = len(history["train_loss"])
    model = MlpClassifier(encoder, network, architecture, train_x.columns)
    return TrainResult(
        model=model,
        history=history,
        summary={
            "best_epoch": best[1],
            "epochs": epochs,
            "train_seconds": round(seconds, 3),
            "train_rows": n,
            "rows_per_second": round(n * epochs / seconds, 1),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "mixed_precision": "bf16" if use_amp else "off",
            "params": asdict(params),
        },
    )
