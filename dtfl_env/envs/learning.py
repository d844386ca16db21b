"""The FL process and the consortium ledger of a DTFL-v0 episode (Algorithm 1, lines 9-14).

:class:`LearningRound` is the environment's one handle on real training: it builds (or
resets) the federated system and the ledger at ``reset``, collects who trains in each
cluster of a round (:meth:`LearningRound.submit`) and, at the end of the round, trains the
clusters (batched), lets the ledger verify their models and aggregates the verified ones
(:meth:`LearningRound.end_round`). With ``fl.backend = "none"`` it does nothing.

Malicious coordinators attack with ``ledger.attack``, one :class:`Attack` of
:data:`ATTACKS` (hooks into the data at reset, the trained model, the signed submission).
The torch and ledger packages are imported on first use only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from dtfl_env.envs.config import EnvConfig, LedgerConfig
from dtfl_env.envs.sites import Site
from dtfl_env.fl.config import FLConfig
from dtfl_env.model.round import RoundOutcome

__all__ = ["ATTACKS", "Attack", "LearningRound"]


# ----------------------------------------------------------------------------- attacks
class Attack:
    """An attack of the malicious coordinators (``ledger.attack``); every hook is the
    identity by default. ``flip_devices``: whose training labels flip at reset (``"all"``,
    ``"bld"``) for attacks on the data, ``None`` for none."""

    flip_devices: str | None = None

    def model(
        self, global_params: np.ndarray, params: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """The model a malicious coordinator submits instead of its trained ``params``."""
        return params

    def submission(self, sub: Any, rng: np.random.Generator) -> Any:
        """The signed submission as it reaches the ledger."""
        return sub


class RandomModel(Attack):
    """A random model in place of the trained one."""

    def model(
        self, global_params: np.ndarray, params: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        from dtfl_env.ledger import random_update

        return random_update(global_params, rng)


class ScaledModel(Attack):
    """The trained update, scaled up."""

    def model(
        self, global_params: np.ndarray, params: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        from dtfl_env.ledger import scaled_update

        return scaled_update(global_params, params)


class TamperSubmission(Attack):
    """The model changed after signing."""

    def submission(self, sub: Any, rng: np.random.Generator) -> Any:
        from dtfl_env.ledger import tamper_submission

        return tamper_submission(sub, rng)


class FlipLabels(Attack):
    """Flipped labels in the training data of ``devices`` (all, or the BLDs' synced data)."""

    def __init__(self, devices: str) -> None:
        self.flip_devices = devices


#: ``ledger.attack`` -> the attack (add one here and to :data:`dtfl_env.envs.config.ATTACKS`)
ATTACKS: dict[str, Attack] = {
    "random": RandomModel(),
    "scaled": ScaledModel(),
    "tamper": TamperSubmission(),
    "label_flip": FlipLabels("all"),
    "tampered_sync": FlipLabels("bld"),
}


# ----------------------------------------------------------------------------- the round
class LearningRound:
    """The episode's federated system and consortium ledger (torch backend), or nothing."""

    def __init__(self) -> None:
        self.fl: Any = None  # dtfl_env.fl.system.FederatedSystem (torch backend)
        self._fl_built: FLConfig | None = None  # the settings self.fl was built with
        self.consortium: Any = None  # dtfl_env.ledger.Consortium
        self._requests: list[tuple[Any, ...]] = []
        #: the ledger's record of the round that ended last, or None: the place for its
        #: non-numeric entries (``validator``, the coordinator id; ``block_hash``, hex, "" in
        #: ledger mode "none"); ``info`` carries all of it as numbers (``ledger_*`` keys,
        #: :func:`dtfl_env.envs.info.ledger_info`)
        self.round_record: dict[str, Any] | None = None
        self._fl_cfg = FLConfig(backend="none")
        self._ledger_cfg = LedgerConfig()
        self.enabled = False
        self._attack_rng = np.random.default_rng()

    def configure(self, config: EnvConfig | Mapping[str, Any]) -> None:
        """Take the env config's ``fl`` and ``ledger`` blocks (used from the next reset); a
        plain config dict is read by :meth:`EnvConfig.from_dict` (strict)."""
        if not isinstance(config, EnvConfig):
            config = EnvConfig.from_dict(config)
        self._fl_cfg, self._ledger_cfg = config.fl, config.ledger
        self.enabled = self._fl_cfg.backend == "torch"

    def threads(self) -> contextlib.AbstractContextManager[None]:
        """torch's and numpy's BLAS threads while the episode's FL work runs (``fl.threads``;
        ``None``: torch's own, BLAS on one thread: :func:`dtfl_env.fl.training.fl_threads`)."""
        if not self.enabled:
            return contextlib.nullcontext()
        from dtfl_env.fl.training import fl_threads

        return fl_threads(self._fl_cfg.threads)

    def reset(self, sites: list[Site], rng: np.random.Generator) -> tuple[float, float] | None:
        """Build (or reset) the federated system and the consortium ledger of the episode;
        returns the initial model's (accuracy, loss), or None without training."""
        self._requests = []
        self.round_record = None
        if not self.enabled:
            self.fl = self.consortium = None
            return None
        from dtfl_env.fl.system import FederatedSystem

        fl_seed = int(rng.integers(0, 2**31 - 1))
        clusters = [s.base for s in sites]
        if self.fl is None or self._fl_cfg != self._fl_built:
            self.fl = FederatedSystem(self._fl_cfg, clusters, seed=fl_seed)
            self._fl_built = self._fl_cfg
        else:
            self.fl.reset(clusters=clusters, seed=fl_seed)
        start = self.fl.evaluate()
        led = self._ledger_cfg
        self.consortium = None
        if led.enabled:
            from dtfl_env.ledger import Consortium, VerifierConfig

            self.consortium = Consortium(
                range(len(sites)),
                mode=led.mode,
                store_payload=led.store_payload,
                verifier=VerifierConfig(peer_baseline=led.peer_baseline),
                rng=np.random.default_rng(int(rng.integers(0, 2**31 - 1))),
                selection=led.validator_selection,
                malicious=range(led.malicious_clusters),
                validator_attack=led.validator_attack,
            )
            self.consortium.set_twin_proportion(  # eq. (2): Prop_Cs
                [s.n / max(s.m + s.n, 1) for s in sites]
            )
        self._attack_rng = np.random.default_rng(int(rng.integers(0, 2**31 - 1)))
        devices = ATTACKS[led.attack].flip_devices
        if led.malicious_clusters and devices is not None:
            self.fl.flip_labels(
                range(led.malicious_clusters),
                seed=int(self._attack_rng.integers(0, 2**31 - 1)),
                devices=devices,
            )
        return start

    def submit(self, cluster_idx: int, out: RoundOutcome) -> None:
        """The cluster's FL round (Algorithm 1, lines 9-10): who trains follows the step.

        GLDs that dropped out or straggled do not train; twins of BLDs whose sync failed
        train on stale data or not at all (``fl.twin_stale_policy``); straggling twins do
        not count. Training itself is deferred to the end of the round and batched over
        all clusters (every cluster starts from the same global model, so this is exact).
        """
        if self.enabled:
            self._requests.append(
                (
                    cluster_idx,
                    ~(out.gld_dropped | out.gld_straggler),
                    out.bld_synced,
                    ~out.bld_straggler,
                )
            )

    def end_round(
        self, round_idx: int, sites: list[Site], clock_s: float
    ) -> tuple[float, float] | None:
        """Train the round's clusters, verify their models on the ledger and aggregate the
        verified ones into the new global model (Algorithm 1, lines 9-14); returns the new
        global model's (accuracy, loss), or None without training. ``clock_s``: the
        simulated time at the end of the round (the block's timestamp)."""
        self.round_record = None
        if not self.enabled:
            return None
        fl = self.fl
        requests, self._requests = self._requests, []
        results = fl.clusters_round(requests)
        trained = {req[0]: part for req, part in zip(requests, fl.last_participation, strict=True)}
        global_before = fl.global_params
        models: list[tuple[int, np.ndarray, int]] = [
            (req[0], params, n) for req, (params, n) in zip(requests, results, strict=True) if n > 0
        ]
        led = self._ledger_cfg
        malicious = set(range(led.malicious_clusters))
        attack = ATTACKS[led.attack]
        # model attacks; tamper: after signing; label attacks: in the training data
        models = [
            (c, attack.model(global_before, p, self._attack_rng) if c in malicious else p, n)
            for c, p, n in models
        ]
        accepted = models
        if self.consortium is not None:
            accepted = self._verify(
                round_idx, sites, clock_s, models, trained, global_before, malicious, attack
            )
        fl.global_aggregate([p for _, p, _ in accepted], [n for _, _, n in accepted])
        return fl.evaluate()

    def _verify(
        self,
        round_idx: int,
        sites: list[Site],
        clock_s: float,
        models: list[tuple[int, np.ndarray, int]],
        trained: dict[int, Any],
        global_before: np.ndarray,
        malicious: set[int],
        attack: Attack,
    ) -> list[tuple[int, np.ndarray, int]]:
        """Submit the signed models to the ledger; the ones its validator accepts."""
        fl, cons, led = self.fl, self.consortium, self._ledger_cfg
        s_total = len(sites)
        subs = []
        for c, params, _ in models:
            g_n, b_n = fl.device_samples(c)
            who = trained[c]
            m = sites[c].m
            ids = [*(int(i) for i in who["gld"]), *(m + int(j) for j in who["bld"])]
            counts = [*(int(g_n[i]) for i in who["gld"]), *(int(b_n[j]) for j in who["bld"])]
            sub = cons.submit(
                c,
                round=round_idx,
                params=params,
                global_params=global_before,
                participants=[1000 * c + i for i in ids],  # device ids
                sample_counts=counts,
            )
            if c in malicious:
                sub = attack.submission(sub, self._attack_rng)
            subs.append(sub)
        k = led.validation_samples

        def quality(params: np.ndarray) -> tuple[float, float]:
            # the validators' own held-out data: the validation split, never the test set
            return fl.validation_quality(params, k)

        rec = cons.end_round(
            round_idx, subs, global_params=global_before, quality=quality, timestamp_s=clock_s
        )
        # the validator's block stands for this round, even when the audit proves it
        # wrong (that costs the validator its eq. (2) reputation: Consortium docstring)
        ok = {int(s.transaction.cluster_id) for s in rec.report.accepted}
        mask_ok = np.zeros(s_total, dtype=bool)
        mask_ok[list(ok)] = True
        submitted = np.zeros(s_total, dtype=bool)
        submitted[[m[0] for m in models]] = True
        overturned = np.zeros(s_total, dtype=bool)
        if rec.audit is not None:
            overturned[list(rec.audit.overturned)] = True
        self.round_record = {
            "validator": rec.validator,
            "block_hash": rec.block_hash or "",
            "block_size_bytes": int(rec.block_size_bytes or 0),
            "accepted_clusters": mask_ok,
            "rejected_clusters": submitted & ~mask_ok,
            "validator_cluster": next(
                c for c, gc in cons.cluster_owner.items() if gc == rec.validator
            ),
            "validator_malicious": int(rec.validator_malicious),
            "audit_failed": int(rec.audit_failed),
            "audit_overturned": overturned,
        }
        return [m for m in models if m[0] in ok]
