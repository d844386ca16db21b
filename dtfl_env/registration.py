"""Environment ids; safe to import twice (``gym.make("dtfl_env:DTFL-v0")`` works anywhere)."""

from __future__ import annotations

from typing import Any

ENTRY_POINT = "dtfl_env.envs.dtfl:DTFLEnv"
#: the native vector env (:class:`dtfl_env.envs.vector.DTFLVectorEnv`) of the latency-only ids
VECTOR_ENTRY_POINT = "dtfl_env.envs.vector:DTFLVectorEnv"

#: id -> config overrides of the defaults (:func:`dtfl_env.envs.config.default_config`)
ENV_IDS: dict[str, dict[str, Any]] = {
    "DTFL-v0": {},  # real FL training (torch) and the ledger
    "DTFL-TableII-v0": {"scenario": "table2", "fl": {"backend": "none"}},
    "DTFL-Random-v0": {
        "scenario": "random",
        "new_topology_each_episode": True,
        "fl": {"backend": "none"},
    },
    "DTFL-Fast-v0": {"fl": {"backend": "none"}, "ledger": {"enabled": False}},
}


def register_envs() -> None:
    import gymnasium as gym

    for env_id, overrides in ENV_IDS.items():
        if env_id in gym.registry:
            continue
        # real FL training (torch) does not batch: DTFL-v0 keeps the sync / async vector envs
        latency_only = overrides.get("fl", {}).get("backend") == "none"
        gym.register(
            id=env_id,
            entry_point=ENTRY_POINT,
            kwargs={"base_config": overrides},
            vector_entry_point=VECTOR_ENTRY_POINT if latency_only else None,
            disable_env_checker=False,
        )
