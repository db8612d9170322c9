"""Certificate policies: RFC 5280 §6.1 policy processing, with RFC 9618's policy graph.

RFC 5280 describes a ``valid_policy_tree`` that can grow exponentially with
policy mappings (CVE-2023-0464 in OpenSSL); RFC 9618 replaces it with a graph
holding at most one node per policy per depth, with the same outcome. Only the
deepest level matters for what comes next, so that is all :class:`PolicyState`
keeps: each node's ``valid_policy``, its ``expected_policy_set``, and the
policies of the trust anchor's domain it descends from (its *origins*: the
``valid_policy`` of the ancestor whose parent is anyPolicy, what §6.1.5 (g)
intersects with the user-initial-policy-set). A level with no node is the
NULL graph: RFC 5280's pruning (§6.1.3 (d)(3)) removes every node of a
branch that does not reach the current depth, so what remains is reachable
from this level.

The inputs of §6.1.1 are the :class:`~mtlscore.Policy` fields
``certificate_policies`` (user-initial-policy-set; None is anyPolicy),
``require_explicit_policy`` (initial-explicit-policy; by default on exactly
when ``certificate_policies`` is set), ``inhibit_policy_mapping`` and
``inhibit_any_policy``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from ..reasons import Reason
from ..x509.cert import Certificate
from .failure import Who
from .policy import ANY_POLICY, Policy

__all__ = ["PolicyState", "end_entity", "initial", "issuer"]


@dataclass(frozen=True, slots=True)
class _Node:
    policy: str  # valid_policy
    expected: frozenset[str]  # expected_policy_set
    origins: frozenset[str]  # the anchor-domain policies it stands for ({anyPolicy} for anyPolicy nodes)


_ANY = frozenset([ANY_POLICY])
_NO_POLICIES: frozenset[str] = frozenset()
_ROOT = _Node(ANY_POLICY, _ANY, _ANY)


class PolicyState(NamedTuple):
    """The deepest level of the valid_policy_graph and the §6.1.2 counters, after some certificates.

    Immutable (a tuple, made per CA of every checked path: cheaper than a frozen
    dataclass): a state handed down by the CAs of a known path is shared by every
    leaf checked under them.
    """

    level: tuple[_Node, ...]  # empty: the graph is NULL
    explicit_policy: int
    policy_mapping: int
    inhibit_any_policy: int
    budget: int


def initial(n: int, policy: Policy) -> PolicyState:
    """§6.1.2 (a), (d)-(f) for a path of ``n`` certificates (the trust anchor not counted), from
    ``policy``'s §6.1.1 inputs; the work budget is the one name constraints get."""
    return PolicyState(
        (_ROOT,),
        0 if policy.explicit_policy else n + 1,
        0 if policy.inhibit_policy_mapping else n + 1,
        0 if policy.inhibit_any_policy else n + 1,
        policy.max_path_work * 64,
    )


def _spend(budget: int, cost: int, who: Who) -> int:
    budget -= cost
    if budget < 0:
        raise who.fail(Reason.SEARCH_LIMIT_EXCEEDED, "certificate policy processing exceeded its work budget")
    return budget


def _children(state: PolicyState, cert: Certificate, who: Who, *, last: bool) -> tuple[tuple[_Node, ...], int]:
    """§6.1.3 (d)-(e): the next level of the graph for ``cert``."""
    policies = cert.policies
    if policies is None or not state.level:
        return (), state.budget  # (e): no certificatePolicies → NULL
    level = state.level
    budget = _spend(state.budget, len(policies) + len(level), who)
    by_expected: dict[str, list[_Node]] = {}
    any_node: _Node | None = None
    for node in level:
        if node.policy == ANY_POLICY:
            any_node = node
        for value in node.expected:
            by_expected.setdefault(value, []).append(node)
    budget = _spend(budget, sum(len(v) for v in by_expected.values()), who)
    out: dict[str, _Node] = {}

    def child(policy: str, parents: Iterable[_Node]) -> None:
        nonlocal budget
        origins: set[str] = set()
        for parent in parents:
            if parent.policy == ANY_POLICY:
                origins.add(policy)  # anyPolicy's own child keeps {anyPolicy}
            else:
                budget = _spend(budget, len(parent.origins), who)
                origins |= parent.origins
        out[policy] = _Node(policy, frozenset([policy]), frozenset(origins))

    # (d)(1): each policy the certificate asserts, under the nodes that expect it,
    # else under anyPolicy.
    for policy in policies:
        if policy == ANY_POLICY:
            continue
        parents = by_expected.get(policy)
        if parents:
            child(policy, parents)
        elif any_node is not None:
            child(policy, (any_node,))
    # (d)(2): anyPolicy, unless inhibited (a self-issued CA may still pass it on).
    if ANY_POLICY in policies and (state.inhibit_any_policy > 0 or (not last and cert.self_issued)):
        for value, parents in by_expected.items():
            if value not in out:
                child(value, parents)
    return tuple(out.values()), budget


def _check(level: tuple[_Node, ...], explicit_policy: int, who: Who) -> None:
    # §6.1.3 (f)
    if explicit_policy <= 0 and not level:
        raise who.fail(
            Reason.NO_VALID_POLICY, f"{who} leaves no valid certificate policy while an explicit policy is required"
        )


def issuer(state: PolicyState, cert: Certificate, who: Who) -> PolicyState:
    """§6.1.3 (d)-(f) and §6.1.4 (a)-(b), (h)-(j) for a CA certificate on the path (``who`` names it).

    Raises the :class:`~mtlscore.verify.failure.PathFailure` that ends the path.
    """
    level, budget = _children(state, cert, who, last=False)
    _check(level, state.explicit_policy, who)
    controls = cert.policy_controls
    explicit, mapping, inhibit_any = state.explicit_policy, state.policy_mapping, state.inhibit_any_policy
    if controls is not None and controls.mappings:
        mapped: dict[str, set[str]] = {}
        for issuer_policy, subject_policy in controls.mappings:
            if ANY_POLICY in (issuer_policy, subject_policy):
                # §6.1.4 (a), §4.2.1.5: policies are never mapped to or from anyPolicy.
                raise who.fail(Reason.MALFORMED, f"{who} maps a policy to or from anyPolicy (RFC 5280 §4.2.1.5)")
            mapped.setdefault(issuer_policy, set()).add(subject_policy)
        budget = _spend(budget, len(controls.mappings) + len(level), who)
        nodes = {node.policy: node for node in level}
        if mapping > 0:
            # (b)(1): a mapped policy now expects its subject-domain policies; one only
            # covered by anyPolicy gets a node of its own.
            any_node = nodes.get(ANY_POLICY)
            for issuer_policy, subjects in mapped.items():
                node = nodes.get(issuer_policy)
                if node is not None:
                    nodes[issuer_policy] = _Node(issuer_policy, frozenset(subjects), node.origins)
                elif any_node is not None:
                    nodes[issuer_policy] = _Node(issuer_policy, frozenset(subjects), frozenset([issuer_policy]))
        else:
            # (b)(2): mapping inhibited: a mapped policy ends here.
            for issuer_policy in mapped:
                nodes.pop(issuer_policy, None)
        level = tuple(nodes.values())
    if not cert.self_issued:  # (h)
        explicit = explicit - 1 if explicit else 0
        mapping = mapping - 1 if mapping else 0
        inhibit_any = inhibit_any - 1 if inhibit_any else 0
    if controls is not None:
        if controls.require_explicit_policy is not None and controls.require_explicit_policy < explicit:  # (i)
            explicit = controls.require_explicit_policy
        if controls.inhibit_policy_mapping is not None and controls.inhibit_policy_mapping < mapping:
            mapping = controls.inhibit_policy_mapping
        if controls.inhibit_any_policy is not None and controls.inhibit_any_policy < inhibit_any:  # (j)
            inhibit_any = controls.inhibit_any_policy
    return PolicyState(level, explicit, mapping, inhibit_any, budget)


def end_entity(
    state: PolicyState, cert: Certificate, who: Who, user_policies: frozenset[str] | None
) -> frozenset[str]:
    """§6.1.3 (d)-(f) for the last certificate and the wrap-up of §6.1.5 (a), (b), (g).

    Returns the policies the path is valid for, named as the trust anchor's domain
    names them (a policy mapped on the way is reported as the one it maps from):
    those of ``user_policies``, or with None every one (anyPolicy in it: any
    policy). Empty: none, which is acceptable only while no explicit policy is required.
    """
    if cert.policies is None and cert.policy_controls is None and state.explicit_policy > 1:
        # The common leaf: no policy extensions, and no explicit policy required even
        # after the wrap-up's decrement — (f) and the final check pass, the set is empty.
        return _NO_POLICIES
    level, _ = _children(state, cert, who, last=True)
    explicit = state.explicit_policy
    _check(level, explicit, who)
    if explicit:  # §6.1.5 (a)
        explicit -= 1
    controls = cert.policy_controls
    if controls is not None and controls.require_explicit_policy == 0:  # (b)
        explicit = 0
    # (g): the intersection with the user-initial-policy-set, in the anchor's domain (the
    # nodes' origins: the valid_policy of the ancestor whose parent is anyPolicy).
    found: set[str] = set()
    for node in level:
        if user_policies is None:
            found |= node.origins
        elif node.policy == ANY_POLICY:
            found |= user_policies
        else:
            found |= node.origins & user_policies
    valid = frozenset(found)
    if explicit <= 0 and not valid:
        if user_policies is not None and level:
            wanted = ", ".join(sorted(user_policies))
            raise who.fail(
                Reason.NO_VALID_POLICY,
                f"{who} is not valid for any of the required certificate policies ({wanted}); "
                f"the path allows {', '.join(sorted(node.policy for node in level))}",
            )
        raise who.fail(
            Reason.NO_VALID_POLICY,
            f"{who}: the path has no valid certificate policy while an explicit policy is required",
        )
    return valid
