"""The federated system the environment drives: clients, twins, clusters and the global model.

One :class:`FederatedSystem` holds the MNIST data, its partition over every device of every
cluster, the global model and the digital twins' synced data. Algorithm 1, per round t:

1. :meth:`FederatedSystem.cluster_round` (line 9-10), once per cluster s: the GLDs that take
   part train locally from the current global model; the twins of the BLDs train at the
   group coordinator on the data they hold; the coordinator averages the local models by
   sample count (FedAvg) into the cluster's local/global model. :meth:`clusters_round` does
   several clusters in one batched computation (same results).
2. The ledger verifies the cluster models (line 12-13, not here).
3. :meth:`FederatedSystem.global_aggregate` (line 14): the main coordinator averages the
   verified cluster models by sample count into the new global model, and the round ends.
4. :meth:`FederatedSystem.evaluate`: test accuracy and loss of the global model, on the test
   set only; the validators' quality check (:meth:`FederatedSystem.validation_quality`)
   uses the separate validation split, which no client trains on.

Digital twins and stale data
----------------------------
A BLD's data is what its twin trains on after a secure sync. Each device collects its data
over ``data_arrival_rounds`` rounds: in round r (0-based) it holds the first
``ceil(n_k * min(1, (r + 1) / A))`` samples of its shard (A = 1: all of it from the start).
A twin holds the prefix it copied at its last successful sync (initially: what the device
held in round 0). A BLD whose sync fails (zero secrecy rate) keeps its twin's stale copy;
with ``twin_stale_policy="stale"`` the twin still trains on it, with ``"skip"`` it does not
train that round. With the default A = 1 a stale twin has the same data as a synced one, so
only ``"skip"`` makes a failed sync cost accuracy; A > 1 makes stale data also smaller.

With ``data_stream="window"`` data arrive fresh every round instead: in round r a device
holds only the chunk ``r mod A`` of its shard (the stream repeats after A rounds, MNIST
being finite), a twin starts empty, and a successful sync copies the current chunk, which
is all the twin then trains on. This is the reading in which the per-round sync of
D_jB bits (eq. (23)) and the twin's per-round training on D_jB bits (eq. (6)) describe
the same data.

Plain FedAvg (Fig. 7's baseline) is the same system with every BLD training as an ordinary
client: ``cluster_round(s, gld, bld_synced=None, bld_participants=None)`` (``None`` = all);
the extra latency of BLDs training on their own hardware is the environment's business.

Determinism: the partition, the initial model and every client's minibatches derive from
``seed`` (a client's from ``(seed, round, cluster, kind, index)``), so results do not depend
on how clients are grouped into batched calls beyond float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dtfl_env.fl.config import MODEL_NAMES, FLConfig, default_fl_config
from dtfl_env.fl.data import MNISTData, load_mnist, partition
from dtfl_env.fl.models import MODELS, flatten_params, make_model, n_params
from dtfl_env.fl.training import (
    evaluate,
    fedavg,
    fl_threads,
    flatten_stacked,
    make_schedule,
    resolve_device,
    train_batched,
    train_sequential,
)
from dtfl_env.ledger.attacks import flip_labels

__all__ = ["ClusterRequest", "FLConfig", "FederatedSystem", "default_fl_config"]

assert set(MODEL_NAMES) == set(MODELS), "dtfl_env.fl.config.MODEL_NAMES out of date"


@dataclass(frozen=True)
class ClusterRequest:
    """Who trains in one cluster's round (see :meth:`FederatedSystem.cluster_round`)."""

    cluster: int
    gld_participants: Any = None
    bld_synced: Any = None
    bld_participants: Any = None


def _data_sizes(cluster: Any, s: int) -> tuple[np.ndarray, np.ndarray]:
    """(GLD D, BLD D) of a cluster given as a pair of arrays or as a ``Cluster``."""
    if hasattr(cluster, "gld") and hasattr(cluster, "bld"):
        pair = (cluster.gld.data_bits, cluster.bld.data_bits)
    elif isinstance(cluster, Sequence) and not isinstance(cluster, str) and len(cluster) == 2:
        pair = (cluster[0], cluster[1])
    else:
        raise ValueError(
            f"clusters[{s}]: expected a (gld_data_bits, bld_data_bits) pair or a "
            f"Cluster, got {type(cluster).__name__}"
        )
    out = []
    for name, d in zip(("gld", "bld"), pair, strict=True):
        try:
            arr = np.asarray(d, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"clusters[{s}].{name}: expected a list of data sizes") from None
        if not np.isfinite(arr).all() or (arr < 0).any():
            raise ValueError(f"clusters[{s}].{name}: data sizes must be finite and >= 0")
        out.append(arr)
    return out[0], out[1]


def _as_index(sel: Any, n: int, name: str) -> np.ndarray:
    """``None`` (all), a boolean mask of length n, or integer indices -> sorted indices."""
    if sel is None:
        return np.arange(n)
    arr = np.asarray(sel)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"{name}: a boolean mask needs {n} entries, got shape {arr.shape}")
        return np.flatnonzero(arr)
    arr = arr.reshape(-1)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected a boolean mask or integer indices, got {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(f"{name}: indices must be in [0, {n}), got {arr.tolist()}")
    return np.unique(arr)


class FederatedSystem:
    """Real federated training of the DT-assisted FL scheme (Algorithm 1) on MNIST.

    Parameters
    ----------
    config : mapping or FLConfig, optional
        The ``fl`` settings (:class:`FLConfig`; unknown keys are errors). Backend must be
        ``"torch"``.
    clusters : sequence
        Per cluster, the devices' data sizes: a ``(gld_data_bits, bld_data_bits)`` pair of
        arrays or a :class:`dtfl_env.config.Cluster`. Device k of all clusters gets
        ``floor(N_train * D_k / sum D)`` training samples (see :func:`partition`).
    seed : int, optional
        Overrides ``config["seed"]`` (e.g. a seed the environment derives from its own).
    data : MNISTData, optional
        Preloaded data; default: loaded as ``config`` says.

    Notes
    -----
    The global model, every cluster model and every return value are flat float32 numpy
    vectors (``flatten_params`` order), ready for the ledger to hash and sign.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | FLConfig | None,
        clusters: Sequence[Any],
        *,
        seed: int | None = None,
        data: MNISTData | None = None,
    ) -> None:
        cfg = config if isinstance(config, FLConfig) else FLConfig.from_dict(config)
        if cfg.backend != "torch":
            raise ValueError(f"fl.backend: FederatedSystem needs 'torch', got {cfg.backend!r}")
        self.config = cfg
        self.device = resolve_device(cfg.device)
        if data is None:
            data = load_mnist(
                cfg.data_source,
                cfg.data_root,
                cfg.download,
                cfg.test_fraction,
                seed=0,
                validation_fraction=cfg.validation_fraction,
            )
        if not isinstance(data, MNISTData):
            raise TypeError(f"data: expected MNISTData, got {type(data).__name__}")
        self.data = data.to(self.device)
        self.model = make_model(cfg.model, seed=0).to(self.device)
        self._global = np.zeros(0, dtype=np.float32)
        self.reset(clusters, seed=cfg.seed if seed is None else seed)

    # ------------------------------------------------------------------ episode
    def reset(self, clusters: Sequence[Any] | None = None, seed: int | None = None) -> None:
        """New partition (new ``clusters`` and/or ``seed``), fresh model, round 0.

        Reuses the loaded data; ``clusters=None`` keeps the current devices.
        """
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise ValueError(f"seed: must be an integer >= 0, got {seed!r}")
            self.seed = int(seed)
        if clusters is not None:
            if len(clusters) == 0:
                raise ValueError("clusters: need at least one cluster")
            self._sizes = [_data_sizes(c, s) for s, c in enumerate(clusters)]
        weights = np.concatenate([np.concatenate([g, b]) for g, b in self._sizes])
        if weights.sum() <= 0:
            raise ValueError("clusters: every device has zero data")
        shards = partition(
            self.data.train_y,
            weights,
            self.config.partition,
            self.config.alpha,
            rng=np.random.default_rng([self.seed, 0]),
        )
        self._gld_shards: list[list[np.ndarray]] = []
        self._bld_shards: list[list[np.ndarray]] = []
        k = 0
        for g, b in self._sizes:
            self._gld_shards.append(shards[k : k + g.size])
            self._bld_shards.append(shards[k + g.size : k + g.size + b.size])
            k += g.size + b.size
        self._round = 0
        window = self.config.data_stream == "window"  # a twin starts empty
        self._twin_span = [
            np.array(
                [(0, 0) if window else self._span(sh.size) for sh in bs], dtype=np.int64
            ).reshape(-1, 2)
            for bs in self._bld_shards
        ]
        init_seed = int(np.random.default_rng([self.seed, 1]).integers(2**31 - 1))
        self._global = flatten_params(make_model(self.config.model, seed=init_seed))
        self._global.setflags(write=False)
        self.last_participation: list[dict[str, np.ndarray]] = []
        self._train_y = self.data.train_y  # labels the clients train on (see flip_labels)

    def flip_labels(
        self, clusters: Sequence[int], seed: int = 0, fraction: float = 1.0, devices: str = "all"
    ) -> int:
        """Label-flipping attack (Fig. 8): the devices of the given clusters train on wrong
        labels from now on, until the next :meth:`reset`. ``devices="all"``: GLDs and the
        data the BLDs sync to their twins (malicious clusters); ``"bld"``: only the BLDs'
        synced data (tampered sync data: the twins train on altered copies). Each flipped
        label becomes another class uniformly at random, drawn from ``seed`` by the one
        label-flipping routine, :func:`~dtfl_env.ledger.attacks.flip_labels`. Returns the
        number of flipped samples. The test data stay clean.
        """
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction: must be in (0, 1], got {fraction}")
        if devices not in ("all", "bld"):
            raise ValueError(f"devices: must be 'all' or 'bld', got {devices!r}")
        idx = []
        for s in clusters:
            self._check_cluster(int(s))
            if devices == "all":
                idx += list(self._gld_shards[int(s)])
            idx += list(self._bld_shards[int(s)])
        if not idx:
            return 0
        y = self._train_y.clone()
        sel = torch.as_tensor(np.concatenate(idx), device=y.device)
        clean = y[sel]
        flipped = flip_labels(clean, np.random.default_rng([int(seed), 7]), fraction=fraction)
        y[sel] = flipped
        self._train_y = y
        return int((flipped != clean).sum())

    # ------------------------------------------------------------------ properties
    @property
    def global_params(self) -> np.ndarray:
        """The current global model, a read-only flat float32 vector."""
        return self._global

    def set_global_params(self, params: np.ndarray) -> None:
        """Replace the global model (e.g. by one restored from the ledger)."""
        vec = np.array(params, dtype=np.float32).reshape(-1)
        if vec.size != self.n_params:
            raise ValueError(f"params: expected {self.n_params} values, got {vec.size}")
        if not np.isfinite(vec).all():
            raise ValueError("params: must be finite")
        vec.setflags(write=False)
        self._global = vec

    @property
    def n_params(self) -> int:
        return n_params(self.model)

    @property
    def round(self) -> int:
        """Completed global rounds (incremented by :meth:`global_aggregate`)."""
        return self._round

    @property
    def n_clusters(self) -> int:
        return len(self._sizes)

    def device_samples(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Training samples of cluster ``s``'s (GLDs, BLDs) shards."""
        self._check_cluster(s)
        return (
            np.array([sh.size for sh in self._gld_shards[s]], dtype=np.int64),
            np.array([sh.size for sh in self._bld_shards[s]], dtype=np.int64),
        )

    def twin_samples(self, s: int) -> np.ndarray:
        """Samples each BLD twin of cluster ``s`` holds (as of its last successful sync)."""
        self._check_cluster(s)
        span = self._twin_span[s]
        return (span[:, 1] - span[:, 0]).astype(np.int64)

    # ------------------------------------------------------------------ FL round
    def _span(self, n: int) -> tuple[int, int]:
        """Samples [lo, hi) of a shard of n samples that its device holds this round."""
        a = self.config.data_arrival_rounds
        if self.config.data_stream == "window":
            c = self._round % a
            return (n * c) // a, (n * (c + 1)) // a
        return 0, math.ceil(n * min(1.0, (self._round + 1) / a))

    def _check_cluster(self, s: int) -> None:
        if (
            isinstance(s, bool)
            or not isinstance(s, (int, np.integer))
            or not 0 <= s < len(self._sizes)
        ):
            raise ValueError(f"cluster: must be an index in [0, {len(self._sizes)}), got {s!r}")

    def cluster_round(
        self,
        s: int,
        gld_participants: Any = None,
        bld_synced: Any = None,
        bld_participants: Any = None,
    ) -> tuple[np.ndarray, int]:
        """One cluster's FL round from the current global model (Algorithm 1, lines 9-10).

        Parameters
        ----------
        s : int
            Cluster index.
        gld_participants : bool mask, int indices or None (all)
            GLDs whose local models reach the coordinator (not dropped, not stragglers).
        bld_synced : bool mask, int indices or None (all)
            BLDs whose twin synced securely this round (positive secrecy rate): the twin's
            data copy is refreshed to the device's current data.
        bld_participants : bool mask, int indices or None (all)
            BLDs whose twin trains in time (not a straggler). A twin that did not sync trains
            on its stale copy (``twin_stale_policy="stale"``) or not at all (``"skip"``).

        Returns
        -------
        params : ndarray of float32, shape (P,)
            The cluster's FedAvg model (the global model itself if nobody trained).
        n_samples : int
            Samples behind it (its weight in :meth:`global_aggregate`; 0 if nobody trained).
        """
        return self.clusters_round(
            [ClusterRequest(s, gld_participants, bld_synced, bld_participants)]
        )[0]

    def clusters_round(
        self, requests: Sequence[ClusterRequest | tuple[Any, ...]]
    ) -> list[tuple[np.ndarray, int]]:
        """Several clusters' rounds in one batched computation; see :meth:`cluster_round`.

        Each request is a :class:`ClusterRequest` or a tuple ``(s, gld_participants,
        bld_synced, bld_participants)``; the answers come in the same order.
        """
        cfg = self.config
        reqs = [r if isinstance(r, ClusterRequest) else ClusterRequest(*r) for r in requests]
        shards: list[np.ndarray] = []
        rngs: list[np.random.Generator] = []
        owner: list[int] = []
        self.last_participation = []
        for q, req in enumerate(reqs):
            s = req.cluster
            self._check_cluster(s)
            m, n = len(self._gld_shards[s]), len(self._bld_shards[s])
            gld = _as_index(req.gld_participants, m, "gld_participants")
            synced = _as_index(req.bld_synced, n, "bld_synced")
            bld = _as_index(req.bld_participants, n, "bld_participants")
            for j in synced:  # a secure sync refreshes the twin's copy of the device data
                self._twin_span[s][j] = self._span(self._bld_shards[s][j].size)
            if cfg.twin_stale_policy == "skip":
                bld = np.intersect1d(bld, synced)
            trained_g, trained_b = [], []
            for i in gld:
                lo, hi = self._span(self._gld_shards[s][i].size)
                if hi > lo:
                    shards.append(self._gld_shards[s][i][lo:hi])
                    rngs.append(np.random.default_rng([self.seed, self._round, s, 0, int(i)]))
                    owner.append(q)
                    trained_g.append(int(i))
            for j in bld:
                lo, hi = (int(x) for x in self._twin_span[s][j])
                if hi > lo:
                    shards.append(self._bld_shards[s][j][lo:hi])
                    rngs.append(np.random.default_rng([self.seed, self._round, s, 1, int(j)]))
                    owner.append(q)
                    trained_b.append(int(j))
            self.last_participation.append(
                {
                    "gld": np.array(trained_g, dtype=np.int64),
                    "bld": np.array(trained_b, dtype=np.int64),
                    "bld_stale": np.setdiff1d(np.array(trained_b, dtype=np.int64), synced),
                }
            )
        results: list[tuple[np.ndarray, int]] = [(self._global, 0)] * len(reqs)
        if not shards:
            return results
        sched = make_schedule(shards, cfg.local_epochs, cfg.batch_size, rngs)
        train = train_batched if cfg.execution == "batched" else train_sequential
        with fl_threads(cfg.threads):
            stacked = train(
                self.model,
                self._global,
                self.data.train_x,
                self._train_y,
                sched,
                cfg.lr,
                self.device,
            )
            flat = flatten_stacked(stacked)
            owner_arr = np.array(owner)
            for q in range(len(reqs)):
                rows = np.flatnonzero(owner_arr == q)
                if rows.size == 0:
                    continue
                counts = sched.n_samples[rows]
                sel = torch.as_tensor(rows, device=flat.device)
                avg = fedavg(flat.index_select(0, sel), counts)
                vec = avg.cpu().numpy()  # type: ignore[union-attr]
                vec.setflags(write=False)
                results[q] = (vec, int(counts.sum()))
        return results

    def global_aggregate(
        self, cluster_params: Sequence[np.ndarray], sample_counts: Sequence[int]
    ) -> np.ndarray:
        """FedAvg of the (verified) cluster models by sample count; ends the round.

        Clusters with zero samples carry no weight; if none has samples, the global model
        is kept. Either way the round counter advances (Algorithm 1, line 14).

        Returns
        -------
        ndarray of float32
            The new global model (read-only).
        """
        counts = np.asarray(sample_counts, dtype=np.float64).reshape(-1)
        if len(cluster_params) != counts.size:
            raise ValueError(
                f"sample_counts: {counts.size} counts for {len(cluster_params)} models"
            )
        if counts.size and (not np.isfinite(counts).all() or (counts < 0).any()):
            raise ValueError("sample_counts: must be finite and >= 0")
        if counts.size and counts.sum() > 0:
            keep = counts > 0
            vecs = [
                np.asarray(p, dtype=np.float32).reshape(-1)
                for p, k in zip(cluster_params, keep, strict=True)
                if k
            ]
            for v in vecs:
                if v.size != self.n_params:
                    raise ValueError(
                        f"cluster_params: expected vectors of {self.n_params} values, got {v.size}"
                    )
            with fl_threads(self.config.threads):
                new = fedavg(np.stack(vecs), counts[keep])
            new.setflags(write=False)  # type: ignore[union-attr]
            self._global = new  # type: ignore[assignment]
        self._round += 1
        return self._global

    def validation_quality(
        self, params: np.ndarray, max_samples: int | None = None
    ) -> tuple[float, float]:
        """Accuracy (0-1) and mean cross-entropy of ``params`` on the validation split (the
        first ``max_samples`` images; all by default): the ledger validators' quality check.
        The clients never train on these images and they are not the test set."""
        n = self.data.n_val if max_samples is None else min(int(max_samples), self.data.n_val)
        if n < 1:
            raise ValueError(
                "fl.validation_fraction: no validation data (the split is empty); "
                "the validators' quality check needs validation_fraction > 0"
            )
        with fl_threads(self.config.threads):
            return evaluate(
                params, self.model, self.data.val_x[:n], self.data.val_y[:n], device=self.device
            )

    def evaluate(self) -> tuple[float, float]:
        """Test accuracy (0-1) and mean cross-entropy of the global model (on the test set
        only: never trained on, never shown to the validators)."""
        with fl_threads(self.config.threads):
            return evaluate(
                self._global, self.model, self.data.test_x, self.data.test_y, device=self.device
            )
