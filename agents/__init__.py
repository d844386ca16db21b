"""Policies (Algorithm 2, exact, heuristics, SB3 agents: PPO, A2C, SAC, TD3) and the evaluation
harness of dtfl-gym."""

from agents.base import CallablePolicy, EnvPolicy, Policy, SB3Policy, load_policy_class
from agents.policies import POLICIES, make_policy

__all__ = [
    "POLICIES",
    "CallablePolicy",
    "EnvPolicy",
    "Policy",
    "SB3Policy",
    "load_policy_class",
    "make_policy",
]
