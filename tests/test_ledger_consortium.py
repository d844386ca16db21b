"""The consortium end to end: rounds, the validator's behaviour, audits and selection."""

from __future__ import annotations

import numpy as np
import pytest

from dtfl_env.ledger import (
    SELECTION_POLICIES,
    VALIDATOR_ATTACKS,
    Consortium,
    Reason,
    block_size_bytes,
    load_chain,
    make_submission,
    malicious_validation,
    params_digest,
    random_update,
    scaled_update,
    tamper_submission,
    verify_submissions,
)


# ---------------------------------------------------------------- end to end
def test_consortium_rounds(tmp_path):
    rng = np.random.default_rng(3)
    cons = Consortium(range(4), rng=rng, store_payload=True)
    target = rng.standard_normal(64)
    g = np.zeros(64, np.float32)

    def q(p):
        loss = float(np.mean((p - target) ** 2))
        return float(np.exp(-loss)), loss

    validators = []
    for t in range(4):
        cons.set_twin_proportion({c: 0.1 * c for c in range(4)})
        subs = []
        for c in range(4):
            w = (g + 0.3 * (target - g) + 0.02 * rng.standard_normal(64)).astype(np.float32)
            if c == 0 and t >= 1:  # the initially best coordinator turns malicious
                w = scaled_update(g, w)
            subs.append(
                cons.submit(
                    c,
                    round=t,
                    params=w,
                    global_params=g,
                    participants=[10 * c, 10 * c + 1],
                    sample_counts=[3, 4],
                )
            )
        rec = cons.end_round(t, subs, global_params=g, quality=q, timestamp_s=2.0 * t)
        validators.append(rec.validator)
        assert rec.block is not None and rec.block_size_bytes == block_size_bytes(rec.block)
        assert (0 in rec.accepted_clusters) == (t == 0)
        g = np.mean([s.params for s in rec.report.accepted], axis=0).astype(np.float32)
    assert validators[0] == "gc-0" and "gc-0" not in validators[2:]
    scores = cons.tracker.score_table()
    success = {c: v["success"] for c, v in cons.tracker.history_components().items()}
    assert min(success, key=success.get) == "gc-0"
    assert scores["gc-0"] < min(scores["gc-1"], cons.records[0].scores["gc-0"])
    cons.chain.verify()
    path = tmp_path / "run.jsonl"
    cons.save(path)
    assert load_chain(path, cons.registry, expected_tip=cons.chain.tip_hash).height == 4
    none = Consortium(range(2), mode="none", rng=rng)
    rec = none.end_round(0, [], global_params=g, quality=None, timestamp_s=0.0)
    assert rec.block is None and none.chain.height == 0


# ---------------------------------------------------------------- validator behaviour
def _round_models(cons, t, g, target, rng, poisoned=()):
    """Every cluster's signed model for round t: a step towards ``target``; the clusters in
    ``poisoned`` send a random model instead."""
    subs = []
    for c in cons.cluster_ids:
        w = (g + 0.3 * (target - g) + 0.02 * rng.standard_normal(g.size)).astype(np.float32)
        if c in poisoned:
            w = random_update(g, rng, scale=30.0)
        subs.append(
            cons.submit(
                c, round=t, params=w, global_params=g, participants=[10 * c], sample_counts=[5]
            )
        )
    return subs


def _quality_fn(target):
    def q(p):
        loss = float(np.mean((p - target) ** 2))
        return float(np.exp(-loss)), loss

    return q


@pytest.mark.parametrize("attack", ["none", "accept_poisoned", "reject_honest", "both"])
def test_malicious_validator_and_the_audit(attack):
    """A malicious validator verifies with its own behaviour; the audit proves its block
    wrong, the block stands (it is what was aggregated) and its reputation drops."""
    rng = np.random.default_rng(5)
    target = rng.standard_normal(64)
    g = (0.1 * rng.standard_normal(64)).astype(np.float32)
    cons = Consortium(
        range(5), rng=rng, malicious=[0, 1], validator_attack=attack, selection="round_robin"
    )  # round 0: gc-0, a malicious coordinator
    before = cons.tracker.score_table()["gc-0"]
    subs = _round_models(cons, 0, g, target, rng, poisoned=(0, 1))
    rec = cons.end_round(0, subs, global_params=g, quality=_quality_fn(target), timestamp_s=0.0)
    assert rec.validator == "gc-0" and rec.validator_malicious
    assert rec.block is not None and rec.block.header.validator == "gc-0"
    assert sorted(rec.reference.summary()["accepted"]) == [2, 3, 4]  # the honest verdicts
    block_clusters = sorted(tx.cluster_id for tx in rec.block.transactions)
    assert block_clusters == sorted(rec.accepted_clusters)  # the block records the report
    expected = {
        "none": [2, 3, 4],
        "accept_poisoned": [0, 1, 2, 3, 4],
        "reject_honest": [],
        "both": [0, 1],
    }[attack]
    assert block_clusters == expected
    assert rec.audit is not None and rec.audit_failed == (attack != "none")
    lets_in, keeps_out = attack in ("accept_poisoned", "both"), attack in ("reject_honest", "both")
    assert rec.audit.wrongly_accepted == ((0, 1) if lets_in else ())
    assert rec.audit.wrongly_rejected == ((2, 3, 4) if keeps_out else ())
    hist = cons.tracker.history_components()
    if attack == "none":
        assert hist["gc-0"]["block_quality"] == pytest.approx(2 / 3)
    else:  # a block proven wrong: quality 0 with weight 3, (0 + 1) / (3 + 2)
        assert hist["gc-0"]["block_quality"] == pytest.approx(1 / 5)
        assert rec.scores["gc-0"] < before
    # the submitters' record follows the audit, not the validator: the colluders' rejection
    # counts, the honest coordinators' acceptance counts
    assert hist["gc-1"]["success"] == pytest.approx(1 / 5)
    assert hist["gc-2"]["success"] == hist["gc-4"]["success"] == pytest.approx(2 / 3)
    cons.chain.verify()  # a wrong block is still a well-formed, signed block


def test_malicious_validation_cannot_forge_what_the_chain_checks(keys):
    ids, reg = keys
    g = np.zeros(8, np.float32)
    subs = [
        make_submission(
            ids[f"gc-{c}"],
            cluster_id=c,
            round=0,
            params=g + 0.1 * c,
            global_digest=params_digest(g),
            participants=[c],
            sample_counts=[1],
        )
        for c in range(3)
    ]
    subs[1] = tamper_submission(subs[1], np.random.default_rng(0))
    honest = verify_submissions(subs, registry=reg, round=0, mode="signature")
    assert honest.mask.tolist() == [True, False, True]
    bad = malicious_validation(honest, attack="both", allies=["gc-1"])
    # the ally's tampered model stays out (its digest does not match), honest ones are out
    assert bad.mask.tolist() == [False, False, False]
    assert bad.verdicts[0].reasons == (Reason.VALIDATOR_OVERRIDE,)
    assert malicious_validation(honest, attack="none", allies=["gc-1"]) == honest
    with pytest.raises(ValueError, match="attack"):
        malicious_validation(honest, attack="lie", allies=[])


def test_validator_selection_policies():
    rng = np.random.default_rng(2)
    prop = {c: 0.1 * c for c in range(5)}  # gc-0 has the fewest twins: the best eq. (2)
    picks = {}
    for policy in SELECTION_POLICIES:
        cons = Consortium(range(5), rng=np.random.default_rng(9), selection=policy)
        cons.set_twin_proportion(prop)
        picks[policy] = [cons.choose_validator(t) for t in range(400)]
    assert picks["reputation"] == ["gc-0"] * 400  # = select_validators(1)[0]
    assert picks["round_robin"][:7] == ["gc-0", "gc-1", "gc-2", "gc-3", "gc-4", "gc-0", "gc-1"]
    counts = {c: picks["random"].count(c) for c in (f"gc-{i}" for i in range(5))}
    assert all(50 <= n <= 110 for n in counts.values()), counts  # about 80 each
    again = Consortium(range(5), rng=np.random.default_rng(9), selection="random")
    assert [again.choose_validator(t) for t in range(400)] == picks["random"]  # seeded
    with pytest.raises(ValueError, match="selection"):
        Consortium(range(3), selection="lottery", rng=rng)
    with pytest.raises(ValueError, match="validator_attack"):
        Consortium(range(3), validator_attack="lie", rng=rng)
    with pytest.raises(ValueError, match="malicious"):
        Consortium(range(3), malicious=[5], rng=rng)
    with pytest.raises(ValueError, match="validator"):
        Consortium(range(3), rng=rng).end_round(
            0,
            [],
            global_params=np.zeros(2, np.float32),
            quality=None,
            timestamp_s=0.0,
            validator="main",
        )


def _malicious_validator_rounds(policy, seed, rounds=20):
    """10 coordinators, 3 malicious (0-2: they submit random models and, as validators,
    accept each other's and reject honest ones); the malicious ones have the fewest twins,
    so eq. (2) ranks them first before any history exists."""
    rng = np.random.default_rng(seed)
    target = rng.standard_normal(32)
    g = (0.1 * rng.standard_normal(32)).astype(np.float32)
    cons = Consortium(
        range(10), rng=rng, malicious=[0, 1, 2], validator_attack="both", selection=policy
    )
    cons.set_twin_proportion([0.1, 0.1, 0.1, *([0.3] * 7)])
    q = _quality_fn(target)
    chosen = []
    for t in range(rounds):
        subs = _round_models(cons, t, g, target, rng, poisoned=(0, 1, 2))
        rec = cons.end_round(t, subs, global_params=g, quality=q, timestamp_s=float(t))
        chosen.append(rec.validator_malicious)
        assert rec.audit_failed == rec.validator_malicious  # every wrong block is caught
        kept = [s.params for s in rec.report.accepted] or [g]
        g = np.mean(kept, axis=0).astype(np.float32)
    return chosen


def test_reputation_selection_avoids_malicious_validators():
    rep = [_malicious_validator_rounds("reputation", s) for s in range(3)]
    rnd = [_malicious_validator_rounds("random", s) for s in range(3)]
    rr = _malicious_validator_rounds("round_robin", 0)
    # eq. (2) starts with a malicious coordinator (fewest twins) and drops it once its
    # submissions and its block are proven wrong; random and round robin keep picking them
    assert all(r[0] for r in rep)
    assert all(not any(r[2:]) for r in rep)
    assert sum(map(sum, rep)) < sum(map(sum, rnd))
    assert sum(map(sum, rnd)) >= 6  # about 30 % of 60 rounds
    assert sum(rr) == 6  # 3 of every 10 rounds
    assert tuple(SELECTION_POLICIES) == ("reputation", "random", "round_robin")
    assert tuple(VALIDATOR_ATTACKS) == ("none", "accept_poisoned", "reject_honest", "both")
