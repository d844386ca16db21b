"""Pure-numpy physics of one cluster (no gymnasium, torch, solver or agent imports)."""

from dtfl_env.model.batch import ClusterBatch, ClusterRow
from dtfl_env.model.round import BatchOutcome, RoundOutcome, round_outcome, round_outcomes
from dtfl_env.model.scoring import (
    ReputationWeights,
    ResourceWeights,
    classify_devices,
    reputation_score,
    resource_score,
)
from dtfl_env.model.system import (
    ENERGY_TOLERANCE,
    Evaluation,
    bld_twin_latency_s,
    evaluate_allocation,
    jamming_lower_bound_w,
    jamming_upper_bound_w,
    local_energy_j,
    local_latency_s,
    min_jamming_for_sync_w,
    min_upload_time_s,
    secrecy_rate_bps,
    sync_time_s,
    upload_energy_j,
    upload_power_w,
)

__all__ = [
    "ENERGY_TOLERANCE",
    "BatchOutcome",
    "ClusterBatch",
    "ClusterRow",
    "Evaluation",
    "ReputationWeights",
    "ResourceWeights",
    "RoundOutcome",
    "bld_twin_latency_s",
    "classify_devices",
    "evaluate_allocation",
    "jamming_lower_bound_w",
    "jamming_upper_bound_w",
    "local_energy_j",
    "local_latency_s",
    "min_jamming_for_sync_w",
    "min_upload_time_s",
    "reputation_score",
    "resource_score",
    "round_outcome",
    "round_outcomes",
    "secrecy_rate_bps",
    "sync_time_s",
    "upload_energy_j",
    "upload_power_w",
]
