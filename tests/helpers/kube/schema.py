"""What kube-apiserver checks before it stores an object: types, names, labels, sizes, defaults, pruning.

Each kind has a schema (a small subset of OpenAPI: object, array, string, integer, boolean, maps,
int-or-string) that is walked once per write to

* refuse values of the wrong type, out of range or not in an enum (422 ``Invalid``);
* fill defaults the way the real server does (Deployment ``replicas: 1`` and its strategy,
  Service ``type: ClusterIP`` and an allocated ``clusterIP``, HTTPRoute ``weight: 1``,
  ``kind: Service`` and ``group: ""`` on a backendRef, container ``imagePullPolicy`` ...);
* drop fields the schema does not know (typed kinds drop them, CRDs prune them), except where the
  schema says unknown fields are kept;

then :func:`semantic_errors` adds the checks that are not about types: DNS names, label keys and
values (63 characters), the 256 KiB annotation limit, a Deployment's selector matching its template
and being immutable, a Service's ``clusterIP`` being immutable, HTTPRoute list limits, Istio's
"weights sum to 100" admission check.

Still more lenient than a real server (said here so a passing test is read for what it proves):
only the fields mlserve and its tests use are typed in detail (pod specs beyond containers, probes,
volumes and Ingress paths are kept as given); no admission webhooks other than Istio's weight sum;
strategic-merge patches are applied as JSON merge patches.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

ANNOTATIONS_MAX = 256 * 1024  # bytes of keys plus values (apimachinery's TotalAnnotationSizeLimitB)
LABEL_VALUE_MAX = 63
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


# -- errors -----------------------------------------------------------------------------------------


def go_value(value: Any) -> str:
    """A value as the API server quotes it in messages (strings quoted, maps as JSON)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class FieldError:
    kind: str  # FieldValueInvalid, FieldValueRequired, FieldValueTooLong, FieldValueNotSupported, ...
    field: str
    detail: str = ""
    value: Any = None

    def body(self) -> str:
        if self.kind == "FieldValueRequired":
            return "Required value" + (f": {self.detail}" if self.detail else "")
        if self.kind == "FieldValueTooLong":
            return f"Too long: {self.detail}"
        if self.kind == "FieldValueTooMany":
            return f"Too many: {self.detail}"
        if self.kind == "FieldValueNotSupported":
            return f"Unsupported value: {go_value(self.value)}: {self.detail}"
        if self.kind == "FieldValueDuplicate":
            return f"Duplicate value: {go_value(self.value)}"
        if self.kind == "FieldValueForbidden":
            return f"Forbidden: {self.detail}"
        return f"Invalid value: {go_value(self.value)}: {self.detail}"

    def message(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> dict[str, str]:
        return {"reason": self.kind, "message": self.body(), "field": self.field}


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", path, detail, value)


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", path, detail)


# -- a small schema language ------------------------------------------------------------------------


@dataclass
class Node:
    type: str  # object, array, string, integer, boolean, int-or-string, map, any
    properties: dict[str, "Node"] = field(default_factory=dict)
    items: "Node | None" = None
    values: "Node | None" = None  # map values
    required: tuple[str, ...] = ()
    default: Any = None
    enum: tuple[Any, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    max_items: int | None = None
    max_length: int | None = None
    preserve: bool = False  # keep unknown fields
    nullable: bool = False


def obj(props: dict[str, Node] | None = None, *, required: tuple[str, ...] = (), preserve: bool = False,
        default: Any = None) -> Node:
    return Node("object", properties=props or {}, required=required, preserve=preserve, default=default)


def arr(items: Node, *, max_items: int | None = None, default: Any = None) -> Node:
    return Node("array", items=items, max_items=max_items, default=default)


def string(*, default: Any = None, enum: tuple[str, ...] = (), max_length: int | None = None) -> Node:
    return Node("string", default=default, enum=enum, max_length=max_length)


def integer(*, minimum: int | None = None, maximum: int | None = None, default: Any = None) -> Node:
    return Node("integer", minimum=minimum, maximum=maximum, default=default)


def boolean(*, default: Any = None) -> Node:
    return Node("boolean", default=default)


def int_or_string(*, default: Any = None) -> Node:
    return Node("int-or-string", default=default)


def string_map() -> Node:
    return Node("map", values=string())


def anything() -> Node:
    return Node("any", preserve=True)


_TYPE_NAMES = {"object": "object", "array": "array", "string": "string", "integer": "integer", "boolean": "boolean"}


def _type_ok(node: Node, value: Any) -> bool:
    if node.type in ("object", "map"):
        return isinstance(value, dict)
    if node.type == "array":
        return isinstance(value, list)
    if node.type == "string":
        return isinstance(value, str)
    if node.type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if node.type == "boolean":
        return isinstance(value, bool)
    if node.type == "int-or-string":
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    return True


def walk(node: Node, value: Any, path: str, errors: list[FieldError]) -> Any:
    """Type-check ``value`` against ``node``; returns it with defaults filled and unknown fields dropped."""
    if value is None and node.nullable:
        return None
    if not _type_ok(node, value):
        expected = "map" if node.type == "map" else _TYPE_NAMES.get(node.type, node.type)
        errors.append(invalid(path, value, f"{path} in body must be of type {expected}: {go_value(type(value).__name__)}"))
        return value
    if node.type == "object":
        out: dict[str, Any] = {}
        for key, child in node.properties.items():
            if key in value:
                out[key] = walk(child, value[key], f"{path}.{key}" if path else key, errors)
            elif child.default is not None:
                out[key] = json.loads(json.dumps(child.default))
                out[key] = walk(child, out[key], f"{path}.{key}" if path else key, errors)
        for key in node.required:
            if key not in value:
                errors.append(required(f"{path}.{key}" if path else key))
        if node.preserve:
            for key, item in value.items():
                out.setdefault(key, item)
        else:
            out = {k: out[k] for k in list(value) + [k for k in out if k not in value] if k in out}
        return out
    if node.type == "map":
        return {k: walk(node.values, v, f"{path}[{k}]", errors) for k, v in value.items()} if node.values else value
    if node.type == "array":
        if node.max_items is not None and len(value) > node.max_items:
            errors.append(FieldError("FieldValueTooMany", path, f"{len(value)}: must have at most {node.max_items} items"))
        return [walk(node.items, item, f"{path}[{i}]", errors) if node.items else item for i, item in enumerate(value)]
    if node.enum and value not in node.enum:
        supported = ", ".join(go_value(v) for v in node.enum)
        errors.append(FieldError("FieldValueNotSupported", path, f"supported values: {supported}", value))
    if node.type == "integer":
        if node.minimum is not None and value < node.minimum:
            errors.append(invalid(path, value, f"must be greater than or equal to {node.minimum}"))
        if node.maximum is not None and value > node.maximum:
            errors.append(invalid(path, value, f"must be less than or equal to {node.maximum}"))
    if node.type == "string" and node.max_length is not None and len(value) > node.max_length:
        errors.append(FieldError("FieldValueTooLong", path, f"may not be more than {node.max_length} bytes"))
    return value


# -- the kinds ----------------------------------------------------------------------------------------

METADATA = obj({
    "name": string(), "generateName": string(), "namespace": string(), "uid": string(),
    "resourceVersion": string(), "generation": integer(), "creationTimestamp": string(),
    "deletionTimestamp": string(), "labels": string_map(), "annotations": string_map(),
    "ownerReferences": arr(anything()), "finalizers": arr(string()), "managedFields": arr(anything()),
})
TEMPLATE_METADATA = obj({"name": string(), "labels": string_map(), "annotations": string_map(),
                         "creationTimestamp": Node("string", nullable=True)})
LABEL_SELECTOR = obj({"matchLabels": string_map(), "matchExpressions": arr(anything())})
CONTAINER_PORT = obj({"name": string(), "containerPort": integer(minimum=1, maximum=65535), "hostPort": integer(),
                      "protocol": string(default="TCP", enum=("TCP", "UDP", "SCTP")), "hostIP": string()},
                     required=("containerPort",))
ENV_VAR = obj({"name": string(), "value": string(), "valueFrom": anything()}, required=("name",))
CONTAINER = obj({
    "name": string(), "image": string(), "env": arr(ENV_VAR), "ports": arr(CONTAINER_PORT),
    "imagePullPolicy": string(enum=("Always", "IfNotPresent", "Never")),
    "terminationMessagePath": string(default="/dev/termination-log"),
    "terminationMessagePolicy": string(default="File", enum=("File", "FallbackToLogsOnError")),
    "resources": obj(preserve=True, default={}),
}, required=("name",), preserve=True)
POD_SPEC = obj({
    "containers": arr(CONTAINER), "initContainers": arr(CONTAINER),
    "restartPolicy": string(default="Always", enum=("Always", "OnFailure", "Never")),
    "terminationGracePeriodSeconds": integer(default=30, minimum=0),
    "dnsPolicy": string(default="ClusterFirst"), "schedulerName": string(default="default-scheduler"),
    "securityContext": obj(preserve=True, default={}),
}, required=("containers",), preserve=True)
DEPLOYMENT = obj({
    "apiVersion": string(), "kind": string(), "metadata": METADATA,
    "spec": obj({
        "replicas": integer(minimum=0, default=1), "selector": LABEL_SELECTOR,
        "template": obj({"metadata": TEMPLATE_METADATA, "spec": POD_SPEC}),
        "strategy": obj({"type": string(enum=("RollingUpdate", "Recreate")),
                         "rollingUpdate": obj({"maxUnavailable": int_or_string(), "maxSurge": int_or_string()})},
                        default={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
        "minReadySeconds": integer(minimum=0), "revisionHistoryLimit": integer(minimum=0, default=10),
        "progressDeadlineSeconds": integer(minimum=1, default=600), "paused": boolean(),
    }, required=("selector", "template")),
    "status": obj(preserve=True),
})
SERVICE_PORT = obj({"name": string(), "protocol": string(default="TCP", enum=("TCP", "UDP", "SCTP")),
                    "appProtocol": string(), "port": integer(minimum=1, maximum=65535), "targetPort": int_or_string(),
                    "nodePort": integer(minimum=30000, maximum=32767)}, required=("port",))
SERVICE = obj({
    "apiVersion": string(), "kind": string(), "metadata": METADATA,
    "spec": obj({
        "type": string(default="ClusterIP", enum=("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")),
        "ports": arr(SERVICE_PORT), "selector": string_map(), "clusterIP": string(), "clusterIPs": arr(string()),
        "externalIPs": arr(string()), "loadBalancerIP": string(), "loadBalancerSourceRanges": arr(string()),
        "loadBalancerClass": string(), "allocateLoadBalancerNodePorts": boolean(),
        "externalName": string(), "externalTrafficPolicy": string(enum=("Cluster", "Local")),
        "internalTrafficPolicy": string(default="Cluster", enum=("Cluster", "Local")),
        "healthCheckNodePort": integer(), "publishNotReadyAddresses": boolean(),
        "sessionAffinity": string(default="None", enum=("None", "ClientIP")), "sessionAffinityConfig": anything(),
        "ipFamilies": arr(string(enum=("IPv4", "IPv6"))), "ipFamilyPolicy": string(enum=("SingleStack", "PreferDualStack", "RequireDualStack")),
    }, default={}),
    "status": obj(preserve=True, default={"loadBalancer": {}}),
})
BACKEND_REF = obj({"group": string(default=""), "kind": string(default="Service"), "name": string(max_length=253),
                   "namespace": string(), "port": integer(minimum=1, maximum=65535),
                   "weight": integer(minimum=0, maximum=1000000, default=1), "filters": arr(anything())},
                  required=("name",))
HEADER_MATCH = obj({"type": string(default="Exact", enum=("Exact", "RegularExpression")), "name": string(max_length=256),
                    "value": string(max_length=4096)}, required=("name", "value"))
ROUTE_MATCH = obj({"path": obj({"type": string(default="PathPrefix", enum=("Exact", "PathPrefix", "RegularExpression")),
                                "value": string(default="/")}),
                   "headers": arr(HEADER_MATCH, max_items=16), "queryParams": arr(anything(), max_items=16),
                   "method": string()})
HTTP_ROUTE = obj({
    "apiVersion": string(), "kind": string(), "metadata": METADATA,
    "spec": obj({
        "parentRefs": arr(obj({"group": string(default="gateway.networking.k8s.io"), "kind": string(default="Gateway"),
                               "namespace": string(), "name": string(), "sectionName": string(), "port": integer()},
                              required=("name",)), max_items=32),
        "hostnames": arr(string(), max_items=16),
        "rules": arr(obj({"name": string(), "matches": arr(ROUTE_MATCH, max_items=64,
                                                             default=[{"path": {"type": "PathPrefix", "value": "/"}}]),
                          "filters": arr(anything(), max_items=16), "backendRefs": arr(BACKEND_REF, max_items=16),
                          "timeouts": anything(), "retry": anything(), "sessionPersistence": anything()}),
                     max_items=16, default=[{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]),
    }),
    "status": obj(preserve=True),
})
INGRESS = obj({
    "apiVersion": string(), "kind": string(), "metadata": METADATA,
    "spec": obj({"ingressClassName": string(), "defaultBackend": anything(), "tls": arr(anything()),
                 "rules": arr(obj({"host": string(), "http": obj({"paths": arr(obj(
                     {"path": string(), "pathType": string(enum=("Exact", "Prefix", "ImplementationSpecific")),
                      "backend": anything()}, required=("pathType", "backend")))}, required=("paths",))}))}),
    "status": obj(preserve=True),
})
VIRTUAL_SERVICE = obj({"apiVersion": string(), "kind": string(), "metadata": METADATA,
                       "spec": obj({"http": arr(obj({"route": arr(obj({"destination": obj(preserve=True),
                                                                         "weight": integer(minimum=0)}, preserve=True))},
                                                    preserve=True))}, preserve=True),
                       "status": obj(preserve=True)})
LEASE = obj({"apiVersion": string(), "kind": string(), "metadata": METADATA,
             "spec": obj({"holderIdentity": string(), "leaseDurationSeconds": integer(), "acquireTime": string(),
                          "renewTime": string(), "leaseTransitions": integer(minimum=0),
                          "strategy": string(), "preferredHolder": string()})})
CONFIG_MAP = obj({"apiVersion": string(), "kind": string(), "metadata": METADATA, "data": string_map(),
                  "binaryData": string_map(), "immutable": boolean()})

SCHEMAS = {"Deployment": DEPLOYMENT, "Service": SERVICE, "HTTPRoute": HTTP_ROUTE, "Ingress": INGRESS,
           "VirtualService": VIRTUAL_SERVICE, "Lease": LEASE, "ConfigMap": CONFIG_MAP}


# -- defaulting that depends on other fields ----------------------------------------------------------

_cluster_ips = (f"10.96.{i // 250}.{i % 250 + 2}" for i in itertools.count(1))
_node_ports = itertools.count(30100)


def default_more(kind: str, new: dict[str, Any], old: dict[str, Any] | None, used_node_ports: set[int]) -> None:
    """Defaults the schema cannot express: image pull policy, cluster IPs and node ports."""
    spec = new.get("spec")
    if kind == "Deployment" and isinstance(spec, dict):
        containers = (((spec.get("template") or {}).get("spec") or {}).get("containers")) or []
        for c in containers:
            if isinstance(c, dict) and "imagePullPolicy" not in c and isinstance(c.get("image"), str):
                tag = c["image"].rsplit("/", 1)[-1]
                c["imagePullPolicy"] = "Always" if (":" not in tag or tag.endswith(":latest")) and "@" not in tag else "IfNotPresent"
    if kind == "Service" and isinstance(spec, dict) and spec.get("type") != "ExternalName":
        old_spec = (old or {}).get("spec") or {}
        if not spec.get("clusterIP"):
            spec["clusterIP"] = old_spec.get("clusterIP") or next(_cluster_ips)
        if not spec.get("clusterIPs"):
            spec["clusterIPs"] = old_spec.get("clusterIPs") or [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
            old_ports = {p.get("port"): p.get("nodePort") for p in old_spec.get("ports") or [] if isinstance(p, dict)}
            for port in spec.get("ports") or []:
                if isinstance(port, dict) and "nodePort" not in port:
                    reuse = old_ports.get(port.get("port"))
                    port["nodePort"] = reuse or next(p for p in _node_ports if p not in used_node_ports)
        for port in spec.get("ports") or []:
            if isinstance(port, dict) and "targetPort" not in port and "port" in port:
                port["targetPort"] = port["port"]


# -- checks that are not about types ----------------------------------------------------------------


def _qualified_key(key: str, path: str) -> list[FieldError]:
    prefix, _, name = key.rpartition("/")
    problems = []
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        problems.append(invalid(path, key, "prefix part a lowercase RFC 1123 subdomain must consist of lower case "
                                           "alphanumeric characters, '-' or '.'"))
    if not name or len(name) > 63:
        problems.append(invalid(path, key, "name part must be no more than 63 characters"))
    elif not QUALIFIED_NAME.match(name):
        problems.append(invalid(path, key, "name part must consist of alphanumeric characters, '-', '_' or '.', and "
                                           "must start and end with an alphanumeric character"))
    return problems


def label_errors(labels: Any, path: str) -> list[FieldError]:
    if not isinstance(labels, dict):
        return []
    problems: list[FieldError] = []
    for key, value in labels.items():
        problems += _qualified_key(key, path)
        if isinstance(value, str):
            if len(value) > LABEL_VALUE_MAX:
                problems.append(invalid(path, value, f"must be no more than {LABEL_VALUE_MAX} characters"))
            elif not LABEL_VALUE.match(value):
                problems.append(invalid(path, value, "a valid label must be an empty string or consist of alphanumeric "
                                                     "characters, '-', '_' or '.', and must start and end with an "
                                                     "alphanumeric character"))
    return problems


def name_errors(kind: str, name: Any) -> list[FieldError]:
    if not name:
        return [required("metadata.name", "name or generateName is required")]
    if not isinstance(name, str):
        return []
    if kind == "Service":
        if len(name) > 63:
            return [invalid("metadata.name", name, "must be no more than 63 characters")]
        if not DNS1035_LABEL.match(name):
            return [invalid("metadata.name", name, "a DNS-1035 label must consist of lower case alphanumeric characters "
                                                   "or '-', start with an alphabetic character, and end with an alphanumeric character")]
        return []
    if len(name) > 253:
        return [invalid("metadata.name", name, "must be no more than 253 characters")]
    if not DNS1123_SUBDOMAIN.match(name):
        return [invalid("metadata.name", name, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                                               "characters, '-' or '.', and must start and end with an alphanumeric character")]
    return []


def _selector_matches(selector: dict[str, Any], labels: dict[str, Any]) -> bool:
    match = selector.get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in match.items())


def semantic_errors(kind: str, new: dict[str, Any], old: dict[str, Any] | None, *, used_node_ports: set[int]) -> list[FieldError]:
    meta = new.get("metadata") or {}
    problems = name_errors(kind, meta.get("name"))
    problems += label_errors(meta.get("labels"), "metadata.labels")
    annotations = meta.get("annotations") or {}
    if isinstance(annotations, dict):
        for key in annotations:
            problems += _qualified_key(key, "metadata.annotations")
        size = sum(len(k.encode()) + len(str(v).encode()) for k, v in annotations.items())
        if size > ANNOTATIONS_MAX:
            problems.append(FieldError("FieldValueTooLong", "metadata.annotations", f"must have at most {ANNOTATIONS_MAX} bytes"))
    spec = new.get("spec") if isinstance(new.get("spec"), dict) else {}
    old_spec = (old or {}).get("spec") or {}
    if kind == "Deployment":
        problems += _deployment_errors(spec, old_spec, old is not None)
    elif kind == "Service":
        problems += _service_errors(spec, old_spec, old is not None, used_node_ports)
    elif kind == "HTTPRoute":
        for i, rule in enumerate(spec.get("rules") or []):
            for j, ref in enumerate(rule.get("backendRefs") or []):
                if ref.get("kind", "Service") == "Service" and ref.get("group", "") == "" and "port" not in ref:
                    problems.append(invalid(f"spec.rules[{i}].backendRefs[{j}]", ref, "Must have port for Service reference"))
    elif kind == "VirtualService":
        for i, http in enumerate(spec.get("http") or []):
            routes = http.get("route") or []
            if len(routes) > 1:
                total = sum(int(r.get("weight") or 0) for r in routes if isinstance(r.get("weight", 0), int))
                if total != 100:
                    problems.append(FieldError("Webhook", f"spec.http[{i}].route", f"total destination weight {total} != 100"))
    elif kind == "Lease":
        duration = spec.get("leaseDurationSeconds")
        if isinstance(duration, int) and duration <= 0:
            problems.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
        for key in ("acquireTime", "renewTime"):
            value = spec.get(key)
            if isinstance(value, str) and not MICRO_TIME.match(value):
                problems.append(invalid(f"spec.{key}", value, "must be an RFC 3339 date-time"))
    return problems


def _deployment_errors(spec: dict[str, Any], old_spec: dict[str, Any], updating: bool) -> list[FieldError]:
    problems: list[FieldError] = []
    selector = spec.get("selector")
    template = spec.get("template") or {}
    labels = ((template.get("metadata") or {}).get("labels")) or {}
    problems += label_errors(labels, "spec.template.metadata.labels")
    if isinstance(selector, dict):
        match = selector.get("matchLabels") or {}
        problems += label_errors(match, "spec.selector.matchLabels")
        if not match and not selector.get("matchExpressions"):
            problems.append(invalid("spec.selector", selector, "empty selector is invalid for deployment"))
        elif not _selector_matches(selector, labels):
            problems.append(invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`"))
        if updating and old_spec.get("selector") is not None and old_spec.get("selector") != selector:
            problems.append(invalid("spec.selector", selector, "field is immutable"))
    containers = ((template.get("spec") or {}).get("containers"))
    if isinstance(containers, list):
        if not containers:
            problems.append(required("spec.template.spec.containers"))
        names = set()
        for i, c in enumerate(containers):
            if not isinstance(c, dict):
                continue
            where = f"spec.template.spec.containers[{i}]"
            name = c.get("name")
            if isinstance(name, str):
                if not DNS1123_LABEL.match(name) or len(name) > 63:
                    problems.append(invalid(f"{where}.name", name, "a lowercase RFC 1123 label must consist of lower case "
                                                                   "alphanumeric characters or '-'"))
                if name in names:
                    problems.append(FieldError("FieldValueDuplicate", f"{where}.name", value=name))
                names.add(name)
            if not c.get("image"):
                problems.append(required(f"{where}.image"))
            for k, env in enumerate(c.get("env") or []):
                env_name = env.get("name") if isinstance(env, dict) else None
                if isinstance(env_name, str) and not ENV_NAME.match(env_name):
                    problems.append(invalid(f"{where}.env[{k}].name", env_name,
                                            "a valid environment variable name must consist of alphabetic characters, "
                                            "digits, '_', '-', or '.', and must not start with a digit"))
    return problems


def _service_errors(spec: dict[str, Any], old_spec: dict[str, Any], updating: bool, used_node_ports: set[int]) -> list[FieldError]:
    problems: list[FieldError] = []
    problems += label_errors(spec.get("selector"), "spec.selector")
    ports = spec.get("ports")
    if spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None" and not ports:
        problems.append(required("spec.ports"))
    if isinstance(ports, list) and len(ports) > 1:
        for i, port in enumerate(ports):
            if isinstance(port, dict) and not port.get("name"):
                problems.append(required(f"spec.ports[{i}].name"))
    for ip in spec.get("externalIPs") or []:
        try:
            ipaddress.ip_address(ip)
        except (ValueError, TypeError):
            problems.append(invalid("spec.externalIPs", ip, "must be a valid IP address"))
    if updating and old_spec.get("clusterIP") and spec.get("clusterIP") != old_spec.get("clusterIP"):
        problems.append(invalid("spec.clusterIPs[0]", spec.get("clusterIP"), "may not change once set"))
    if spec.get("type") == "ClusterIP":
        for i, port in enumerate(spec.get("ports") or []):
            if isinstance(port, dict) and port.get("nodePort"):
                problems.append(FieldError("FieldValueForbidden", f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'"))
    old_node_ports = {p.get("nodePort") for p in old_spec.get("ports") or [] if isinstance(p, dict)}
    for i, port in enumerate(spec.get("ports") or []):
        node_port = port.get("nodePort") if isinstance(port, dict) else None
        if node_port and node_port in used_node_ports and node_port not in old_node_ports:
            problems.append(invalid(f"spec.ports[{i}].nodePort", node_port, "provided port is already allocated"))
    return problems
