"""Traffic routers: how a percentage of traffic reaches the canary, as guarded JSON patches.

Each router names the one object it changes, computes the RFC 6902 operations that give the canary
``weight`` percent of the traffic (``test`` operations first, so a patch computed from a stale read
is refused), reads the weight back, and reports problems a controller recorded on the object.

* :class:`GatewayRouter`: Gateway API ``HTTPRoute`` ``backendRefs[].weight`` (integer proportions:
  stable ``100 - w``, canary ``w``); after a change the route's ``status.parents[].conditions``
  ``Accepted`` and ``ResolvedRefs`` must be ``True``. A rule that also sends traffic to a third
  backend is refused (like Istio's): its share cannot be kept while stable and canary sum to 100.
* :class:`NginxRouter`: a second ``Ingress`` with ``nginx.ingress.kubernetes.io/canary: "true"`` and
  ``canary-weight: "w"`` (created from the stable Ingress when missing).
* :class:`IstioRouter`: ``VirtualService`` ``spec.http[].route[].weight``, summing to 100.
* :class:`SelectorRouter`: blue-green, the Service ``spec.selector[key]`` switches colour at once.

With ``--baseline`` the split routers know a third Service, the baseline (a fresh copy of stable
started with the canary): stable ``100 - 2w``, baseline ``w``, canary ``w``. With
``--canary-header``/``--canary-cookie`` requests that carry the header (or cookie) reach the canary
whatever the weights say: Gateway API gets one more rule (its header match makes it win over the
plain rule, by the Gateway API's precedence), ingress-nginx gets ``canary-by-header`` /
``canary-by-cookie`` on the canary Ingress.

The operations are plain changes; the caller puts the resourceVersion guard in front
(:func:`mlserve.rollout.ops.guarded`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

from mlserve.errors import UsageError
from mlserve.rollout.ops import Op, get_at, pointer, set_ops

NGINX_CANARY = "nginx.ingress.kubernetes.io/canary"
NGINX_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
NGINX_HEADER = "nginx.ingress.kubernetes.io/canary-by-header"
NGINX_HEADER_VALUE = "nginx.ingress.kubernetes.io/canary-by-header-value"
NGINX_COOKIE = "nginx.ingress.kubernetes.io/canary-by-cookie"

ROUTERS = ("gateway", "nginx", "istio")


def _clean_copy(obj: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of ``obj`` fit for creating a sibling called ``name`` (server-set fields dropped, no empty namespace)."""
    meta = obj.get("metadata", {})
    new = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {"name": name, **({"namespace": meta["namespace"]} if meta.get("namespace") else {})},
        "spec": copy.deepcopy(obj.get("spec", {})),
    }
    if meta.get("labels"):
        new["metadata"]["labels"] = copy.deepcopy(meta["labels"])
    return new


class Router:
    """Base class: one object whose fields decide how much traffic the canary gets."""

    kind: str
    name: str
    label: str

    def creates(self, store: Any, namespace: str) -> dict[str, Any] | None:
        """An object to create before the first step (None: the router's object must exist)."""
        return None

    def snapshot_paths(self, obj: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def weight_ops(self, obj: dict[str, Any], weight: int, baseline: int = 0) -> list[Op]:
        """Operations that give the canary ``weight`` percent (and the baseline ``baseline`` percent)."""
        raise NotImplementedError

    def weight(self, obj: dict[str, Any]) -> int | None:
        raise NotImplementedError

    def header_ops(self, obj: dict[str, Any], route: Any) -> list[Op]:
        """Operations that send ``route``'s requests (a :class:`~mlserve.rollout.settings.HeaderRoute`) to the canary; None removes it."""
        raise UsageError(f"routing by header or cookie is not supported by the {self.label} router")

    def problems(self, obj: dict[str, Any]) -> tuple[list[str], list[str]]:
        """(errors, warnings) recorded on the object by its controller after a change."""
        return [], []


class _SplitRouter(Router):
    """A router whose object lists weighted destinations: spec.<rules>[i].<entries>[j].weight.

    Subclasses say where the lists are (``_lists``), which entries are stable, canary and baseline
    (``_splits``) and how to make a canary or baseline entry from the stable one (``_new_entry``).
    """

    _lists: ClassVar[tuple[str, str]] = ("rules", "backendRefs")
    baseline_service: str | None = None

    def _splits(self, obj: dict[str, Any]) -> list[tuple[int, int, int | None, int | None]]:
        raise NotImplementedError

    def _new_entry(self, stable_entry: dict[str, Any], service: str, weight: int) -> dict[str, Any]:
        raise NotImplementedError

    def _path(self, i: int, *rest: Any) -> str:
        return pointer("spec", self._lists[0], i, self._lists[1], *rest)

    def snapshot_paths(self, obj: dict[str, Any]) -> list[str]:
        # The weights, or the slots new canary/baseline entries will be appended at (absent now):
        # a revert then touches only those (newest first), and a GitOps file keeps its comments.
        paths = []
        for i, s, c, b in self._splits(obj):
            entries = obj["spec"][self._lists[0]][i][self._lists[1]]
            slot = len(entries)
            paths.append(self._path(i, s, "weight"))
            if c is not None:
                paths.append(self._path(i, c, "weight"))
            else:
                paths.append(self._path(i, slot))
                slot += 1
            if self.baseline_service:
                paths.append(self._path(i, b, "weight") if b is not None else self._path(i, slot))
        return paths

    def weight_ops(self, obj: dict[str, Any], weight: int, baseline: int = 0) -> list[Op]:
        ops: list[Op] = []
        for i, s, c, b in self._splits(obj):
            entries = obj["spec"][self._lists[0]][i][self._lists[1]]
            ops += set_ops(obj, self._path(i, s, "weight"), 100 - weight - baseline)
            if c is not None:
                ops += set_ops(obj, self._path(i, c, "weight"), weight)
            elif weight > 0:
                ops.append({"op": "add", "path": self._path(i, "-"), "value": self._new_entry(entries[s], self.canary_service, weight)})
            if b is not None:
                ops += set_ops(obj, self._path(i, b, "weight"), baseline)
            elif baseline > 0 and self.baseline_service:
                if c is None and weight == 0:
                    # keep the canary's slot before the baseline's, as the snapshot recorded them
                    ops.append({"op": "add", "path": self._path(i, "-"), "value": self._new_entry(entries[s], self.canary_service, 0)})
                ops.append({"op": "add", "path": self._path(i, "-"),
                            "value": self._new_entry(entries[s], self.baseline_service, baseline)})
        return ops

    def shares(self, obj: dict[str, Any]) -> dict[str, int]:
        """Percent of the first split's traffic per role: stable, canary, baseline."""
        i, s, c, b = self._splits(obj)[0]
        entries = obj["spec"][self._lists[0]][i][self._lists[1]]
        raw = {"stable": int(entries[s].get("weight", self._default_weight)),
               "canary": int(entries[c].get("weight", self._default_weight)) if c is not None else 0,
               "baseline": int(entries[b].get("weight", self._default_weight)) if b is not None else 0}
        total = sum(raw.values())
        return {k: round(100 * v / total) if total else 0 for k, v in raw.items()}

    _default_weight: ClassVar[int] = 1

    def weight(self, obj: dict[str, Any]) -> int | None:
        return self.shares(obj)["canary"]


@dataclass
class GatewayRouter(_SplitRouter):
    name: str
    stable_service: str
    canary_service: str
    baseline_service: str | None = None
    kind: str = "HTTPRoute"
    label: str = "gateway"

    def _is(self, ref: dict[str, Any], service: str | None) -> bool:
        return service is not None and ref.get("name") == service and ref.get("kind", "Service") == "Service" \
            and ref.get("group", "") in ("", "core")

    def _rules(self, obj: dict[str, Any]) -> list[tuple[int, int, int | None, int | None]]:
        """(rule index, stable ref, canary ref or None, baseline ref or None) for each rule that serves stable."""
        found = []
        for i, rule in enumerate(obj.get("spec", {}).get("rules") or []):
            refs = rule.get("backendRefs") or []
            stable = [j for j, r in enumerate(refs) if self._is(r, self.stable_service)]
            canary = [j for j, r in enumerate(refs) if self._is(r, self.canary_service)]
            baseline = [j for j, r in enumerate(refs) if self._is(r, self.baseline_service)]
            if not stable:
                continue
            others = set(range(len(refs))) - {stable[0]} - set(canary[:1]) - set(baseline[:1])
            if others:
                names = ", ".join(sorted({str(refs[j].get("name", "?")) for j in others}))
                raise UsageError(
                    f"HTTPRoute {self.name} rules[{i}] sends traffic to backends other than stable and canary ({names}); "
                    "mlserve only manages a two-way split",
                    hint=f"move the other backends to their own rule, or point --route at a route whose rule has only {self.stable_service}",
                )
            found.append((i, stable[0], canary[0] if canary else None, baseline[0] if baseline else None))
        if not found:
            raise UsageError(
                f"HTTPRoute {self.name} has no rule with a backendRef to Service {self.stable_service}",
                hint="point --route at the route serving the stable Service, or set --service",
            )
        return found

    def _splits(self, obj: dict[str, Any]) -> list[tuple[int, int, int | None, int | None]]:
        return self._rules(obj)

    def _new_entry(self, stable_entry: dict[str, Any], service: str, weight: int) -> dict[str, Any]:
        ref = {k: v for k, v in stable_entry.items() if k != "weight"}
        ref.update(name=service, weight=weight)
        return ref

    def _header_rule_index(self, obj: dict[str, Any]) -> int | None:
        for i, rule in enumerate(obj.get("spec", {}).get("rules") or []):
            refs = rule.get("backendRefs") or []
            if refs and all(self._is(r, self.canary_service) for r in refs) and any(m.get("headers") for m in rule.get("matches") or []):
                return i
        return None

    def header_slot(self, obj: dict[str, Any]) -> str:
        """Where the header rule goes (for the revert snapshot): after the last rule."""
        return pointer("spec", "rules", len(obj.get("spec", {}).get("rules") or []))

    def header_ops(self, obj: dict[str, Any], route: Any) -> list[Op]:
        existing = self._header_rule_index(obj)
        if route is None:
            return [] if existing is None else [{"op": "remove", "path": pointer("spec", "rules", existing)}]
        if existing is not None:
            return []
        i, s, _, _ = self._rules(obj)[0]
        rule = obj["spec"]["rules"][i]
        matches = copy.deepcopy(rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}])
        for match in matches:
            match["headers"] = list(match.get("headers") or []) + [{"type": "Exact", "name": route.header, "value": route.value}]
        ref = self._new_entry(rule["backendRefs"][s], self.canary_service, 1)
        return [{"op": "add", "path": pointer("spec", "rules", "-"), "value": {"matches": matches, "backendRefs": [ref]}}]

    def problems(self, obj: dict[str, Any]) -> tuple[list[str], list[str]]:
        errors: list[str] = []
        warnings: list[str] = []
        parents = (obj.get("status") or {}).get("parents") or []
        if not parents:
            warnings.append(f"HTTPRoute {self.name}: no Gateway controller reported status (status.parents is empty)")
        for parent in parents:
            ref = parent.get("parentRef", {}).get("name", "?")
            conditions = {c.get("type"): c for c in parent.get("conditions") or []}
            for wanted in ("Accepted", "ResolvedRefs"):
                cond = conditions.get(wanted)
                if cond is None:
                    warnings.append(f"HTTPRoute {self.name} (parent {ref}): no {wanted} condition reported")
                elif str(cond.get("status")) != "True":
                    errors.append(
                        f"HTTPRoute {self.name} (parent {ref}): {wanted}={cond.get('status')} "
                        f"({cond.get('reason', '')}: {cond.get('message', '')})"
                    )
        return errors, warnings


@dataclass
class NginxRouter(Router):
    """``name`` is the stable Ingress; the canary Ingress is ``canary_ingress`` (created when missing)."""

    stable_ingress: str
    stable_service: str
    canary_service: str
    canary_ingress: str = ""
    kind: str = "Ingress"
    label: str = "nginx"
    name: str = ""

    def __post_init__(self) -> None:
        self.canary_ingress = self.canary_ingress or f"{self.stable_ingress}-canary"
        self.name = self.canary_ingress

    def creates(self, store: Any, namespace: str) -> dict[str, Any] | None:
        if store.get("Ingress", self.canary_ingress, namespace) is not None:
            return None
        stable = store.get("Ingress", self.stable_ingress, namespace)
        if stable is None:
            from mlserve.errors import NotFoundError

            raise NotFoundError(f"Ingress {namespace}/{self.stable_ingress} not found", hint="set --route to the stable Ingress")
        new = _clean_copy(stable, self.canary_ingress)
        annotations = {k: v for k, v in (stable["metadata"].get("annotations") or {}).items()
                       if k.startswith("nginx.ingress.kubernetes.io/") or k == "kubernetes.io/ingress.class"}
        annotations.update({NGINX_CANARY: "true", NGINX_WEIGHT: "0"})
        new["metadata"]["annotations"] = annotations
        _rename_backend(new["spec"], self.stable_service, self.canary_service)
        return new

    def snapshot_paths(self, obj: dict[str, Any]) -> list[str]:
        return [pointer("metadata", "annotations", key) for key in (NGINX_CANARY, NGINX_WEIGHT, NGINX_HEADER,
                                                                     NGINX_HEADER_VALUE, NGINX_COOKIE)]

    def weight_ops(self, obj: dict[str, Any], weight: int, baseline: int = 0) -> list[Op]:
        if baseline:
            raise UsageError("ingress-nginx has one canary per Ingress: no baseline")
        return (set_ops(obj, pointer("metadata", "annotations", NGINX_CANARY), "true")
                + set_ops(obj, pointer("metadata", "annotations", NGINX_WEIGHT), str(weight)))

    def header_ops(self, obj: dict[str, Any], route: Any) -> list[Op]:
        from mlserve.rollout.ops import remove_ops

        at = lambda key: pointer("metadata", "annotations", key)  # noqa: E731
        if route is None:
            return remove_ops(obj, at(NGINX_HEADER)) + remove_ops(obj, at(NGINX_HEADER_VALUE)) + remove_ops(obj, at(NGINX_COOKIE))
        if route.cookie:
            return set_ops(obj, at(NGINX_COOKIE), route.cookie)
        return set_ops(obj, at(NGINX_HEADER), route.header) + set_ops(obj, at(NGINX_HEADER_VALUE), route.value)

    def weight(self, obj: dict[str, Any]) -> int | None:
        annotations = obj.get("metadata", {}).get("annotations") or {}
        if str(annotations.get(NGINX_CANARY, "false")).lower() != "true":
            return 0
        try:
            return int(annotations.get(NGINX_WEIGHT, 0))
        except ValueError:
            return None


def _rename_backend(node: Any, old: str, new: str) -> None:
    """Point every ``service: {name: old}`` backend inside an Ingress spec at ``new``."""
    if isinstance(node, dict):
        service = node.get("service")
        if isinstance(service, dict) and service.get("name") == old:
            service["name"] = new
        for value in node.values():
            _rename_backend(value, old, new)
    elif isinstance(node, list):
        for value in node:
            _rename_backend(value, old, new)


@dataclass
class IstioRouter(_SplitRouter):
    _lists: ClassVar[tuple[str, str]] = ("http", "route")
    _default_weight: ClassVar[int] = 0
    name: str
    stable_service: str
    canary_service: str
    baseline_service: str | None = None
    kind: str = "VirtualService"
    label: str = "istio"

    def _is(self, host: str, service: str | None) -> bool:
        return service is not None and (host == service or host.startswith(service + "."))

    def _routes(self, obj: dict[str, Any]) -> list[tuple[int, int, int | None, int | None]]:
        found = []
        for i, http in enumerate(obj.get("spec", {}).get("http") or []):
            routes = http.get("route") or []
            hosts = [r.get("destination", {}).get("host", "") for r in routes]
            stable = [j for j, h in enumerate(hosts) if self._is(h, self.stable_service)]
            canary = [j for j, h in enumerate(hosts) if self._is(h, self.canary_service)]
            baseline = [j for j, h in enumerate(hosts) if self._is(h, self.baseline_service)]
            if not stable:
                continue
            others = set(range(len(routes))) - {stable[0]} - set(canary[:1]) - set(baseline[:1])
            if others:
                raise UsageError(f"VirtualService {self.name} http[{i}] routes to hosts other than stable and canary; "
                                 "mlserve only manages a two-way split")
            found.append((i, stable[0], canary[0] if canary else None, baseline[0] if baseline else None))
        if not found:
            raise UsageError(f"VirtualService {self.name} has no http route to {self.stable_service}")
        return found

    def _splits(self, obj: dict[str, Any]) -> list[tuple[int, int, int | None, int | None]]:
        return self._routes(obj)

    def _new_entry(self, stable_entry: dict[str, Any], service: str, weight: int) -> dict[str, Any]:
        entry = copy.deepcopy(stable_entry)
        host = entry["destination"]["host"]
        entry["destination"]["host"] = service + host[len(self.stable_service):]
        entry["weight"] = weight
        return entry

    def shares(self, obj: dict[str, Any]) -> dict[str, int]:
        i, s, c, b = self._routes(obj)[0]
        routes = obj["spec"]["http"][i]["route"]
        if len(routes) == 1:
            return {"stable": 100, "canary": 0, "baseline": 0}
        return {"stable": int(routes[s].get("weight", 0)),
                "canary": int(routes[c].get("weight", 0)) if c is not None else 0,
                "baseline": int(routes[b].get("weight", 0)) if b is not None else 0}


@dataclass
class SelectorRouter(Router):
    """Blue-green: ``weight`` 100 puts the Service's selector on ``new_value``, anything else on ``old_value``."""

    name: str
    key: str
    old_value: str
    new_value: str
    kind: str = "Service"
    label: str = "service-selector"

    def snapshot_paths(self, obj: dict[str, Any]) -> list[str]:
        return [pointer("spec", "selector", self.key)]

    def weight_ops(self, obj: dict[str, Any], weight: int, baseline: int = 0) -> list[Op]:
        return set_ops(obj, pointer("spec", "selector", self.key), self.new_value if weight >= 100 else self.old_value)

    def weight(self, obj: dict[str, Any]) -> int | None:
        value = get_at(obj, pointer("spec", "selector", self.key), None)
        return 100 if value == self.new_value else 0 if value == self.old_value else None
