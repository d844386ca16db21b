"""Malicious participants (Fig. 8): attacked cluster models and label flipping.

Parameter-level attacks return a new flat float32 vector (or :class:`Submission`):

- :func:`random_update`: the global model plus Gaussian noise of the global model's scale;
- :func:`scaled_update`: the honest update multiplied by a factor (default -10, a
  sign-flipping boosting attack);
- :func:`tamper_submission`: parameters changed after the coordinator signed them (a
  man-in-the-middle or a coordinator swapping its model after signing).

A malicious coordinator chosen as validator verifies with its own behaviour
(:func:`malicious_validation`, one of :data:`VALIDATOR_ATTACKS`): it starts from the honest
verdicts and then accepts its allies' poisoned models (``"accept_poisoned"``), rejects the
honest coordinators' models (``"reject_honest"``), or both (``"both"``).

Data-level attacks belong to the FL side; :func:`flip_labels` is the one label-flipping
routine, on numpy or torch label arrays (this module never imports torch), that
:meth:`dtfl_env.fl.system.FederatedSystem.flip_labels` applies to the malicious devices'
training data (Fig. 8's ``label_flip`` and ``tampered_sync`` attacks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np

from dtfl_env.ledger.verification import Reason, Submission, VerificationReport

__all__ = [
    "VALIDATOR_ATTACKS",
    "flip_labels",
    "malicious_validation",
    "random_update",
    "scaled_update",
    "tamper_submission",
]

#: behaviours of a malicious validator (:func:`malicious_validation`)
VALIDATOR_ATTACKS = ("none", "accept_poisoned", "reject_honest", "both")

# rejections a colluding validator cannot undo: a block carrying such a transaction fails
# the chain's own checks (signature, replay, round) or its payload digest, which every
# member runs when the block is appended
_UNFORGEABLE = frozenset(
    {
        Reason.UNKNOWN_SUBMITTER,
        Reason.BAD_SIGNATURE,
        Reason.BAD_PARAMS,
        Reason.DIGEST_MISMATCH,
        Reason.WRONG_ROUND,
        Reason.REPLAY,
        Reason.EQUIVOCATION,
    }
)


def _vec(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1 or a.dtype.kind != "f":
        raise ValueError(
            f"{name}: expected a flat float vector, got shape {a.shape} dtype {a.dtype}"
        )
    return a


def random_update(
    global_params: np.ndarray, rng: np.random.Generator, *, scale: float = 1.0
) -> np.ndarray:
    """``global + scale * rms(global) * N(0, I)``: a model of random noise (float32).

    Parameters
    ----------
    global_params : np.ndarray
        The shared global model (flat).
    rng : np.random.Generator
        Source of the noise.
    scale : float
        Noise level relative to the root-mean-square of the global parameters (a floor of
        1e-3 is used for an all-zero model).
    """
    g = _vec(global_params, "global_params").astype(np.float64)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale: must be finite and > 0, got {scale}")
    rms = max(float(np.sqrt(np.mean(g**2))) if g.size else 0.0, 1e-3)
    return (g + scale * rms * rng.standard_normal(g.size)).astype(np.float32)


def scaled_update(
    global_params: np.ndarray, honest_params: np.ndarray, *, factor: float = -10.0
) -> np.ndarray:
    """``global + factor * (honest - global)``: the honest update scaled (default x -10)."""
    g = _vec(global_params, "global_params").astype(np.float64)
    h = _vec(honest_params, "honest_params").astype(np.float64)
    if g.shape != h.shape:
        raise ValueError(f"honest_params: shape {h.shape} differs from global_params {g.shape}")
    if not np.isfinite(factor):
        raise ValueError(f"factor: must be finite, got {factor}")
    return (g + factor * (h - g)).astype(np.float32)


def tamper_submission(
    submission: Submission, rng: np.random.Generator, *, n_changed: int = 1, magnitude: float = 1.0
) -> Submission:
    """The same signed transaction with ``n_changed`` parameters changed after signing.

    Each chosen parameter gets ``magnitude * N(0, 1)`` added (at least one float32 ulp),
    so the parameters no longer hash to the signed ``model_digest``.
    """
    p = np.array(submission.params, dtype=np.float32, copy=True)
    if not 1 <= n_changed <= p.size:
        raise ValueError(f"n_changed: must lie in [1, {p.size}], got {n_changed}")
    if not np.isfinite(magnitude) or magnitude <= 0:
        raise ValueError(f"magnitude: must be finite and > 0, got {magnitude}")
    idx = rng.choice(p.size, size=n_changed, replace=False)
    for i in idx:
        old = p[i]
        new = np.float32(old + magnitude * rng.standard_normal())
        if new == old or not np.isfinite(new):  # below float32 resolution: nudge one ulp
            new = np.nextafter(old, np.float32(np.inf), dtype=np.float32)
        p[i] = new
    return dataclasses.replace(submission, params=p)


def flip_labels(
    y: Any,
    rng: np.random.Generator,
    num_classes: int = 10,
    *,
    fraction: float = 1.0,
    mode: Literal["random", "reverse"] = "random",
) -> Any:
    """Label flipping: a copy of ``y`` with labels replaced by wrong ones.

    The draws: first one uniform number per label (label k is flipped where it is below
    ``fraction``: the flipped sets of one ``rng`` state are nested in ``fraction``), then,
    in mode ``"random"``, one shift in ``[1, num_classes)`` per flipped label in order.

    Parameters
    ----------
    y : np.ndarray or torch.Tensor
        Integer class labels in ``[0, num_classes)``; a torch tensor comes back as a tensor
        of the same dtype and device.
    rng : np.random.Generator
        Chooses the flipped samples and (mode ``"random"``) their new labels.
    num_classes : int
        Number of classes (>= 2).
    fraction : float
        Share of samples flipped, in [0, 1].
    mode : {"random", "reverse"}
        ``"random"``: a uniformly drawn *different* class; ``"reverse"``:
        ``num_classes - 1 - y`` (a fixed permutation, e.g. 0 <-> 9 for MNIST; a label
        equal to its mirror, odd ``num_classes`` only, stays).
    """
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < 2
    ):
        raise ValueError(f"num_classes: must be an integer >= 2, got {num_classes!r}")
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction: must lie in [0, 1], got {fraction}")
    if mode not in ("random", "reverse"):
        raise ValueError(f"mode: expected 'random' or 'reverse', got {mode!r}")
    is_torch = type(y).__module__.startswith("torch")
    arr = np.asarray(y.detach().cpu().numpy() if is_torch else y)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"y: expected integer labels, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"y: labels must lie in [0, {num_classes}), got [{arr.min()}, {arr.max()}]"
        )
    out = arr.copy()
    flat = out.reshape(-1)
    chosen = rng.random(flat.size) < fraction
    if mode == "random":
        shift = rng.integers(1, num_classes, size=int(np.count_nonzero(chosen)))
        flat[chosen] = (flat[chosen] + shift) % num_classes
    else:
        flat[chosen] = num_classes - 1 - flat[chosen]
    return y.new_tensor(out) if is_torch else out


def malicious_validation(
    report: VerificationReport, *, attack: str, allies: Iterable[str]
) -> VerificationReport:
    """The verification as a malicious validator does it, from the honest ``report``.

    Parameters
    ----------
    report : VerificationReport
        The honest verification of the round's submissions.
    attack : {"none", "accept_poisoned", "reject_honest", "both"}
        ``"accept_poisoned"``: every submission of an ally is accepted, whatever the quality,
        norm or provenance checks found (except where a block carrying it would fail the
        chain's own verification: a bad signature, a replay, a parameter digest mismatch);
        ``"reject_honest"``: every submission of a non-ally that passed is rejected
        (reason ``validator-override``); ``"both"``: the two together; ``"none"``: the
        honest report unchanged.
    allies : iterable of str
        Coordinator ids of the malicious coordinators (the validator's accomplices).

    Returns
    -------
    VerificationReport
        The same submissions with the validator's verdicts.
    """
    if attack not in VALIDATOR_ATTACKS:
        raise ValueError(f"attack: must be one of {list(VALIDATOR_ATTACKS)}, got {attack!r}")
    if not isinstance(report, VerificationReport):
        raise TypeError(f"report: expected a VerificationReport, got {type(report).__name__}")
    friends = set(allies)
    accept = attack in ("accept_poisoned", "both")
    reject = attack in ("reject_honest", "both")
    verdicts = []
    for v in report.verdicts:
        if (
            accept
            and v.submitter in friends
            and not v.accepted
            and not _UNFORGEABLE & set(v.reasons)
        ):
            v = dataclasses.replace(v, accepted=True, reasons=(), messages=())
        elif reject and v.submitter not in friends and v.accepted:
            v = dataclasses.replace(
                v,
                accepted=False,
                reasons=(Reason.VALIDATOR_OVERRIDE,),
                messages=("rejected by the validator although every check passed",),
            )
        verdicts.append(v)
    return dataclasses.replace(report, verdicts=tuple(verdicts))
