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
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

from mlserve.errors import UsageError
from mlserve.rollout.ops import Op, get_at, pointer, set_ops

NGINX_CANARY = "nginx.ingress.kubernetes.io/canary"
NGINX_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"

ROUTERS = ("gateway", "nginx", "istio")


def _clean_copy(obj: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of ``obj`` fit for creating a sibling called ``name`` (server-set fields dropped)."""
    meta = obj.get("metadata", {})
    new = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {"name": name, "namespace": meta.get("namespace")},
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

    def weight_ops(self, obj: dict[str, Any], weight: int) -> list[Op]:
        raise NotImplementedError

    def weight(self, obj: dict[str, Any]) -> int | None:
        raise NotImplementedError

    def problems(self, obj: dict[str, Any]) -> tuple[list[str], list[str]]:
        """(errors, warnings) recorded on the object by its controller after a change."""
        return [], []


class _SplitRouter(Router):
    """A router whose object lists weighted destinations: spec.<rules>[i].<entries>[j].weight.

    Subclasses say where the lists are (``_lists``), which entries are stable and canary
    (``_splits``) and how to make a canary entry from the stable one (``_new_entry``).
    """

    _lists: ClassVar[tuple[str, str]] = ("rules", "backendRefs")

    def _splits(self, obj: dict[str, Any]) -> list[tuple[int, int, int | None]]:
        raise NotImplementedError

    def _new_entry(self, stable_entry: dict[str, Any], weight: int) -> dict[str, Any]:
        raise NotImplementedError

    def _path(self, i: int, *rest: Any) -> str:
        return pointer("spec", self._lists[0], i, self._lists[1], *rest)

    def snapshot_paths(self, obj: dict[str, Any]) -> list[str]:
        # The two weights, or the slot a new canary entry will be appended at (absent now):
        # a revert then touches only those, and a GitOps file keeps its comments.
        paths = []
        for i, s, c in self._splits(obj):
            entries = obj["spec"][self._lists[0]][i][self._lists[1]]
            paths.append(self._path(i, s, "weight"))
            paths.append(self._path(i, c, "weight") if c is not None else self._path(i, len(entries)))
        return paths

    def weight_ops(self, obj: dict[str, Any], weight: int) -> list[Op]:
        ops: list[Op] = []
        for i, s, c in self._splits(obj):
            entries = obj["spec"][self._lists[0]][i][self._lists[1]]
            ops += set_ops(obj, self._path(i, s, "weight"), 100 - weight)
            if c is not None:
                ops += set_ops(obj, self._path(i, c, "weight"), weight)
            elif weight > 0:
                ops.append({"op": "add", "path": self._path(i, "-"), "value": self._new_entry(entries[s], weight)})
        return ops


@dataclass
class GatewayRouter(_SplitRouter):
    name: str
    stable_service: str
    canary_service: str
    kind: str = "HTTPRoute"
    label: str = "gateway"

    def _rules(self, obj: dict[str, Any]) -> list[tuple[int, int, int | None]]:
        """(rule index, stable ref index, canary ref index or None) for each rule that serves stable."""
        found = []
        for i, rule in enumerate(obj.get("spec", {}).get("rules") or []):
            refs = rule.get("backendRefs") or []
            stable = [j for j, r in enumerate(refs) if r.get("name") == self.stable_service and r.get("kind", "Service") == "Service"]
            canary = [j for j, r in enumerate(refs) if r.get("name") == self.canary_service and r.get("kind", "Service") == "Service"]
            if not stable:
                continue
            others = set(range(len(refs))) - {stable[0]} - set(canary[:1])
            if others:
                names = ", ".join(sorted({str(refs[j].get("name", "?")) for j in others}))
                raise UsageError(
                    f"HTTPRoute {self.name} rules[{i}] sends traffic to backends other than stable and canary ({names}); "
                    "mlserve only manages a two-way split",
                    hint=f"move the other backends to their own rule, or point --route at a route whose rule has only {self.stable_service}",
                )
            found.append((i, stable[0], canary[0] if canary else None))
        if not found:
            raise UsageError(
                f"HTTPRoute {self.name} has no rule with a backendRef to Service {self.stable_service}",
                hint="point --route at the route serving the stable Service, or set --stable-service",
            )
        return found

    def _splits(self, obj: dict[str, Any]) -> list[tuple[int, int, int | None]]:
        return self._rules(obj)

    def _new_entry(self, stable_entry: dict[str, Any], weight: int) -> dict[str, Any]:
        ref = {k: v for k, v in stable_entry.items() if k != "weight"}
        ref.update(name=self.canary_service, weight=weight)
        return ref

    def weight(self, obj: dict[str, Any]) -> int | None:
        i, s, c = self._rules(obj)[0]
        refs = obj["spec"]["rules"][i]["backendRefs"]
        canary = int(refs[c].get("weight", 1)) if c is not None else 0
        stable = int(refs[s].get("weight", 1))
        total = canary + stable
        return round(100 * canary / total) if total else None

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
        return [pointer("metadata", "annotations", NGINX_CANARY), pointer("metadata", "annotations", NGINX_WEIGHT)]

    def weight_ops(self, obj: dict[str, Any], weight: int) -> list[Op]:
        return (set_ops(obj, pointer("metadata", "annotations", NGINX_CANARY), "true")
                + set_ops(obj, pointer("metadata", "annotations", NGINX_WEIGHT), str(weight)))

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
    name: str
    stable_service: str
    canary_service: str
    kind: str = "VirtualService"
    label: str = "istio"

    def _is(self, host: str, service: str) -> bool:
        return host == service or host.startswith(service + ".")

    def _routes(self, obj: dict[str, Any]) -> list[tuple[int, int, int | None]]:
        found = []
        for i, http in enumerate(obj.get("spec", {}).get("http") or []):
            routes = http.get("route") or []
            hosts = [r.get("destination", {}).get("host", "") for r in routes]
            stable = [j for j, h in enumerate(hosts) if self._is(h, self.stable_service)]
            canary = [j for j, h in enumerate(hosts) if self._is(h, self.canary_service)]
            if not stable:
                continue
            others = set(range(len(routes))) - {stable[0]} - set(canary[:1])
            if others:
                raise UsageError(f"VirtualService {self.name} http[{i}] routes to hosts other than stable and canary; "
                                 "mlserve only manages a two-way split")
            found.append((i, stable[0], canary[0] if canary else None))
        if not found:
            raise UsageError(f"VirtualService {self.name} has no http route to {self.stable_service}")
        return found

    def _splits(self, obj: dict[str, Any]) -> list[tuple[int, int, int | None]]:
        return self._routes(obj)

    def _new_entry(self, stable_entry: dict[str, Any], weight: int) -> dict[str, Any]:
        entry = copy.deepcopy(stable_entry)
        host = entry["destination"]["host"]
        entry["destination"]["host"] = self.canary_service + host[len(self.stable_service):]
        entry["weight"] = weight
        return entry

    def weight(self, obj: dict[str, Any]) -> int | None:
        i, s, c = self._routes(obj)[0]
        routes = obj["spec"]["http"][i]["route"]
        if c is None:
            return 0
        return int(routes[c].get("weight", 0))


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

    def weight_ops(self, obj: dict[str, Any], weight: int) -> list[Op]:
        return set_ops(obj, pointer("spec", "selector", self.key), self.new_value if weight >= 100 else self.old_value)

    def weight(self, obj: dict[str, Any]) -> int | None:
        value = get_at(obj, pointer("spec", "selector", self.key), None)
        return 100 if value == self.new_value else 0 if value == self.old_value else None
