"""Kubernetes' own CEL examples with the results kube documents for them: the rule table of
kubernetes.io's "Validation rules" (CustomResourceDefinitions) and "CEL in Kubernetes" pages,
and the examples in the doc comments and tests of k8s.io/apiserver/pkg/cel/library (lists,
regex, urls, quantity, ip, cidr, format, semver). The unit tests run them on kext.cel and
benchmarks/cel_engines.py runs them on each candidate engine.

Each example: (library, expression, self's schema or None, self's value, expected), where
expected is the value, ERROR (an evaluation error) or COMPILE_ERROR (refused when compiled).
"""

from __future__ import annotations

from typing import Any

ERROR = "<evaluation error>"
COMPILE_ERROR = "<compile error>"

_INT = {"type": "integer"}
_STR = {"type": "string"}
_REPLICAS = {"type": "object", "properties": {
    "minReplicas": _INT, "replicas": _INT, "maxReplicas": _INT}}
_STATE = {"type": "object", "properties": {
    "stateCounts": {"type": "object", "additionalProperties": _INT}}}
_LISTS = {"type": "object", "properties": {
    "list1": {"type": "array", "items": _STR}, "list2": {"type": "array", "items": _STR}}}
_MAP1 = {"type": "object", "additionalProperties": _STR}
_ENVARS = {"type": "object", "properties": {"envars": {
    "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
    "items": {"type": "object", "properties": {"name": _STR, "value": _STR}}}}}
_EXPIRY = {"type": "object", "properties": {
    "created": {"type": "string", "format": "date-time"},
    "ttl": {"type": "string", "format": "duration"},
    "expired": {"type": "string", "format": "date-time"}}}
_HEALTH = {"type": "object", "properties": {"health": _STR}}
_WIDGETS = {"type": "object", "properties": {"widgets": {
    "type": "array", "items": {"type": "object", "properties": {"key": _STR, "foo": _INT}}}}}
_INT_OR_STRING = {"x-kubernetes-int-or-string": True}
_PREFIXED = {"type": "object", "properties": {"prefix": _STR}}
_SETS = {"type": "object", "properties": {
    "set1": {"type": "array", "items": _STR, "x-kubernetes-list-type": "set"},
    "set2": {"type": "array", "items": _STR, "x-kubernetes-list-type": "set"}}}
_DETAILS = {"type": "object", "properties": {
    "names": {"type": "array", "items": _STR, "x-kubernetes-list-type": "set"},
    "details": {"type": "object", "additionalProperties": _STR}}}
_CLUSTERS = {"type": "object", "properties": {"primary": _STR, "clusters": {
    "type": "array", "items": {"type": "object", "properties": {"name": _STR}}}}}
_STATUS = {"type": "object", "properties": {
    "spec": {"type": "object", "properties": {"maxDesired": _INT}},
    "status": {"type": "object", "properties": {"actual": _INT}}}}
_COMPONENTS = {"type": "object", "additionalProperties": {
    "type": "object", "properties": {"priority": _INT}}}
_VALUES = {"type": "array", "items": _INT}
_ESCAPED = {"type": "object", "properties": {
    "namespace": _INT, "x-prop": _INT, "redact__d": _INT}}
_NUMBERS = {"type": "object", "properties": {"x": _INT, "maxLimit": _INT}}

Example = tuple[str, str, dict[str, Any] | None, Any, Any]

EXAMPLES: list[Example] = [
    # kubernetes.io: Validation rules, and CEL in Kubernetes
    ("docs", "self.minReplicas <= self.replicas && self.replicas <= self.maxReplicas",
     _REPLICAS, {"minReplicas": 1, "replicas": 3, "maxReplicas": 5}, True),
    ("docs", "self.minReplicas <= self.replicas && self.replicas <= self.maxReplicas",
     _REPLICAS, {"minReplicas": 0, "replicas": 20, "maxReplicas": 10}, False),
    ("docs", "'Available' in self.stateCounts", _STATE, {"stateCounts": {"Available": 1}},
     True),
    ("docs", "'Available' in self.stateCounts", _STATE, {"stateCounts": {"Failed": 1}}, False),
    ("docs", "(size(self.list1) == 0) != (size(self.list2) == 0)", _LISTS,
     {"list1": ["a"], "list2": []}, True),
    ("docs", "(self.list1.size() == 0) != (self.list2.size() == 0)", _LISTS,
     {"list1": ["a"], "list2": ["b"]}, False),
    ("docs", "!('MY_KEY' in self) || self['MY_KEY'].matches('^[a-zA-Z]*$')", _MAP1,
     {"MY_KEY": "abc"}, True),
    ("docs", "!('MY_KEY' in self) || self['MY_KEY'].matches('^[a-zA-Z]*$')", _MAP1,
     {"MY_KEY": "a1"}, False),
    ("docs", "self.envars.filter(e, e.name == 'MY_ENV').all(e, e.value.matches('^[a-zA-Z]*$'))",
     _ENVARS, {"envars": [{"name": "MY_ENV", "value": "abc"}, {"name": "B", "value": "1"}]},
     True),
    ("docs", "self.envars.filter(e, e.name == 'MY_ENV').all(e, e.value.matches('^[a-zA-Z]*$'))",
     _ENVARS, {"envars": [{"name": "MY_ENV", "value": "a-1"}]}, False),
    ("docs", "has(self.expired) && self.created + self.ttl < self.expired", _EXPIRY,
     {"created": "2024-01-01T00:00:00Z", "ttl": "1h", "expired": "2024-01-01T02:00:00Z"}, True),
    ("docs", "has(self.expired) && self.created + self.ttl < self.expired", _EXPIRY,
     {"created": "2024-01-01T00:00:00Z", "ttl": "3h", "expired": "2024-01-01T02:00:00Z"},
     False),
    ("docs", "self.health.startsWith('ok')", _HEALTH, {"health": "ok: all good"}, True),
    ("docs", "self.widgets.exists(w, w.key == 'x' && w.foo < 10)", _WIDGETS,
     {"widgets": [{"key": "y", "foo": 1}, {"key": "x", "foo": 5}]}, True),
    ("docs", "self.widgets.exists(w, w.key == 'x' && w.foo < 10)", _WIDGETS,
     {"widgets": [{"key": "x", "foo": 50}]}, False),
    ("docs", "type(self) == string ? self == '100%' : self == 1000", _INT_OR_STRING, "100%",
     True),
    ("docs", "type(self) == string ? self == '100%' : self == 1000", _INT_OR_STRING, 1000, True),
    ("docs", "type(self) == string ? self == '99%' : self == 42", _INT_OR_STRING, 41, False),
    ("docs", "self.set1.all(e, !(e in self.set2))", _SETS,
     {"set1": ["a", "b"], "set2": ["c"]}, True),
    ("docs", "self.set1.all(e, !(e in self.set2))", _SETS,
     {"set1": ["a", "b"], "set2": ["b"]}, False),
    ("docs", "size(self.names) == size(self.details) && self.names.all(n, n in self.details)",
     _DETAILS, {"names": ["a", "b"], "details": {"a": "x", "b": "y"}}, True),
    ("docs", "self.details.all(key, key.matches('^[a-zA-Z]*$'))", _DETAILS,
     {"names": [], "details": {"ab": "x", "c1": "y"}}, False),
    ("docs", "self.details.all(key, self.details[key].matches('^[a-zA-Z]*$'))", _DETAILS,
     {"names": [], "details": {"ab": "x"}}, True),
    ("docs", "size(self.clusters.filter(c, c.name == self.primary)) == 1", _CLUSTERS,
     {"primary": "a", "clusters": [{"name": "a"}, {"name": "b"}]}, True),
    ("docs", "self.status.actual <= self.spec.maxDesired", _STATUS,
     {"spec": {"maxDesired": 3}, "status": {"actual": 4}}, False),
    ("docs", "self['Widget'].priority < 10", _COMPONENTS, {"Widget": {"priority": 5}}, True),
    ("docs", "self.all(value, value >= 0 && value < 100)", _VALUES, [1, 50, 99], True),
    ("docs", "self.startsWith('kube')", _STR, "kubernetes", True),
    ("docs", "self.__namespace__ > 0 && self.x__dash__prop > 0 && "
     "self.redact__underscores__d > 0", _ESCAPED, {"namespace": 1, "x-prop": 2, "redact__d": 3},
     True),
    ("docs", "self.x <= self.maxLimit", _NUMBERS, {"x": 9, "maxLimit": 5}, False),
    ("docs", "self == true", _INT, 1, COMPILE_ERROR),
    ("docs", "self.nonExistingField > 0", _HEALTH, {"health": "ok"}, COMPILE_ERROR),
    ("docs", "has(self)", _HEALTH, {"health": "ok"}, COMPILE_ERROR),
    ("docs", "self.prefix.size() > 0 && 'abc'.startsWith(self.prefix)", _PREFIXED,
     {"prefix": "ab"}, True),
    # list library (lists.go)
    ("lists", "[1, 2, 3].isSorted()", None, None, True),
    ("lists", "['b', 'a'].isSorted()", None, None, False),
    ("lists", "[1, 3].sum()", None, None, 4),
    ("lists", "[1.0, 3.0].sum()", None, None, 4.0),
    ("lists", "[duration('1m'), duration('1s')].sum() == duration('1m1s')", None, None, True),
    ("lists", "[1, 3].min()", None, None, 1),
    ("lists", "[1, 3].max()", None, None, 3),
    ("lists", "[1].min()", None, None, 1),
    ("lists", "[].min()", None, None, ERROR),
    ("lists", "[1, 2, 2, 3].indexOf(2)", None, None, 1),
    ("lists", "['a', 'b', 'b', 'c'].lastIndexOf('b')", None, None, 2),
    ("lists", "[1.0].indexOf(1.1)", None, None, -1),
    ("lists", "self.map(x, x.weight).sum() == 1.0", {"type": "array", "items": {
        "type": "object", "properties": {"weight": {"type": "number"}}}},
     [{"weight": 0.25}, {"weight": 0.75}], True),
    ("lists", "self.names.indexOf('should-be-first') == 0", {"type": "object", "properties": {
        "names": {"type": "array", "items": _STR}}}, {"names": ["should-be-first", "b"]},
     True),
    # sets extension
    ("sets", "sets.contains([1, 2, 3], [2, 3])", None, None, True),
    ("sets", "sets.intersects([1, 2], [3])", None, None, False),
    ("sets", "sets.equivalent([1, 2], [2, 1, 1])", None, None, True),
    # regex library (regex.go)
    ("regex", "'abc 123'.find('[0-9]+')", None, None, "123"),
    ("regex", "'abc 123'.find('xyz')", None, None, ""),
    ("regex", "'123 abc 456'.findAll('[0-9]+')", None, None, ["123", "456"]),
    ("regex", "'123 abc 456'.findAll('[0-9]+', 1)", None, None, ["123"]),
    ("regex", "'123 abc 456'.findAll('xyz')", None, None, []),
    ("regex", "'1, 2, 3, 4'.findAll('[0-9]+').map(x, int(x)).sum() < 100", None, None, True),
    # strings extension
    ("strings", "'hello'.charAt(1)", None, None, "e"),
    ("strings", "'hello mellow'.indexOf('ll')", None, None, 2),
    ("strings", "'hello mellow'.lastIndexOf('ll')", None, None, 8),
    ("strings", "'TacoCat'.lowerAscii()", None, None, "tacocat"),
    ("strings", "'TacoCat'.upperAscii()", None, None, "TACOCAT"),
    ("strings", "'hello hello'.replace('he', 'we')", None, None, "wello wello"),
    ("strings", "'hello hello hello'.split(' ')", None, None, ["hello", "hello", "hello"]),
    ("strings", "'tacocat'.substring(4)", None, None, "cat"),
    ("strings", "'  \\ttrim\\n    '.trim()", None, None, "trim"),
    ("strings", "['hello', 'mellow'].join(' ')", None, None, "hello mellow"),
    ("strings", "'%s is %s'.format(['Ana', 'here'])", None, None, "Ana is here"),
    ("strings", "'%d years, %.1f%%'.format([30, 99.5])", None, None, COMPILE_ERROR),
    ("strings", "'%d items'.format([30])", None, None, "30 items"),
    # url library (urls.go)
    ("url", "isURL('https://user:pass@example.com:80/path?query=val#fragment')", None, None,
     True),
    ("url", "isURL('/absolute-path')", None, None, True),
    ("url", "isURL('https://a:b:c/')", None, None, False),
    ("url", "isURL('../relative-path')", None, None, False),
    ("url", "url('../relative-path')", None, None, ERROR),
    ("url", "url('/path').getScheme()", None, None, ""),
    ("url", "url('https://example.com/').getScheme()", None, None, "https"),
    ("url", "url('https://example.com:80/').getHost()", None, None, "example.com:80"),
    ("url", "url('https://[::1]:80/').getHost()", None, None, "[::1]:80"),
    ("url", "url('https://example.com:80/').getHostname()", None, None, "example.com"),
    ("url", "url('https://[::1]:80/').getHostname()", None, None, "::1"),
    ("url", "url('https://example.com:80/').getPort()", None, None, "80"),
    ("url", "url('https://example.com/').getPort()", None, None, ""),
    ("url", "url('https://example.com/path with spaces/').getEscapedPath()", None, None,
     "/path%20with%20spaces/"),
    ("url", "url('https://example.com').getEscapedPath()", None, None, ""),
    ("url", "url('https://example.com/path?k1=a&k2=b&k2=c').getQuery()", None, None,
     {"k1": ["a"], "k2": ["b", "c"]}),
    ("url", "url('https://example.com/path?').getQuery()", None, None, {}),
    # quantity library (quantity.go)
    ("quantity", "isQuantity('1.3G')", None, None, True),
    ("quantity", "isQuantity('1.3Gi')", None, None, True),
    ("quantity", "isQuantity('1,3G')", None, None, False),
    ("quantity", "isQuantity('10000k')", None, None, True),
    ("quantity", "isQuantity('200K')", None, None, False),
    ("quantity", "isQuantity('Three')", None, None, False),
    ("quantity", "isQuantity('Mi')", None, None, False),
    ("quantity", "quantity('200K')", None, None, ERROR),
    ("quantity", "quantity('50000000G').isInteger()", None, None, True),
    ("quantity", "quantity('50k').isInteger()", None, None, True),
    ("quantity", "quantity('9999999999999999999999999999999999999G').asInteger()", None, None,
     ERROR),
    ("quantity", "quantity('9999999999999999999999999999999999999G').isInteger()", None, None,
     False),
    ("quantity", "quantity('50k').asInteger() == 50000", None, None, True),
    ("quantity", "quantity('50k').sub(20000).asApproximateFloat() == 30000.0", None, None, True),
    ("quantity", "quantity('50k').add(quantity('20k')) == quantity('70k')", None, None, True),
    ("quantity", "quantity('50k').add(20) == quantity('50020')", None, None, True),
    ("quantity", "quantity('50k').sub(quantity('20k')) == quantity('30k')", None, None, True),
    ("quantity", "quantity('50k').add(20).sub(quantity('100k')).sub(-50000) == quantity('20')",
     None, None, True),
    ("quantity", "quantity('200M').compareTo(quantity('0.2G'))", None, None, 0),
    ("quantity", "quantity('50M').compareTo(quantity('50Mi'))", None, None, -1),
    ("quantity", "quantity('50Mi').compareTo(quantity('50M'))", None, None, 1),
    ("quantity", "quantity('150Mi').isGreaterThan(quantity('100Mi'))", None, None, True),
    ("quantity", "quantity('50M').isLessThan(quantity('100M'))", None, None, True),
    ("quantity", "quantity('-1').sign()", None, None, -1),
    ("quantity", "quantity(self.memory).isLessThan(quantity('1Gi'))", {"type": "object",
     "properties": {"memory": _STR}}, {"memory": "512Mi"}, True),
    # ip library (ip.go, ip_test.go)
    ("ip", "isIP('127.0.0.1')", None, None, True),
    ("ip", "isIP('::1')", None, None, True),
    ("ip", "isIP('127.0.0.256')", None, None, False),
    ("ip", "isIP(':::1')", None, None, False),
    ("ip", "ip('192.168.0.1.0')", None, None, ERROR),
    ("ip", "ip.isCanonical('127.0.0.1')", None, None, True),
    ("ip", "ip.isCanonical('2001:db8::abcd')", None, None, True),
    ("ip", "ip.isCanonical('2001:DB8::ABCD')", None, None, False),
    ("ip", "ip.isCanonical('2001:db8::0:0:0:abcd')", None, None, False),
    ("ip", "ip('127.0.0.1').family()", None, None, 4),
    ("ip", "ip('::1').family()", None, None, 6),
    ("ip", "ip('0.0.0.0').isUnspecified()", None, None, True),
    ("ip", "ip('::').isUnspecified()", None, None, True),
    ("ip", "ip('127.0.0.1').isLoopback()", None, None, True),
    ("ip", "ip('2001:db8::abcd').isLoopback()", None, None, False),
    ("ip", "ip('224.0.0.1').isLinkLocalMulticast()", None, None, True),
    ("ip", "ip('224.0.1.1').isLinkLocalMulticast()", None, None, False),
    ("ip", "ip('ff02::1').isLinkLocalMulticast()", None, None, True),
    ("ip", "ip('169.254.169.254').isLinkLocalUnicast()", None, None, True),
    ("ip", "ip('fe80::1').isLinkLocalUnicast()", None, None, True),
    ("ip", "ip('fd80::1').isLinkLocalUnicast()", None, None, False),
    ("ip", "ip('192.168.0.1').isGlobalUnicast()", None, None, True),
    ("ip", "ip('255.255.255.255').isGlobalUnicast()", None, None, False),
    ("ip", "ip('ff00::1').isGlobalUnicast()", None, None, False),
    ("ip", "string(ip('192.168.0.1'))", None, None, "192.168.0.1"),
    ("ip", "type(ip('192.168.0.1')) == net.IP", None, None, True),
    ("ip", "isIP(cidr('192.168.0.0/24'))", None, None, COMPILE_ERROR),
    # cidr library (cidr.go, cidr_test.go)
    ("cidr", "isCIDR('192.168.0.0/16')", None, None, True),
    ("cidr", "isCIDR('::1/128')", None, None, True),
    ("cidr", "isCIDR('192.168.0.0/33')", None, None, False),
    ("cidr", "isCIDR('::1/129')", None, None, False),
    ("cidr", "cidr('192.168.0.0/')", None, None, ERROR),
    ("cidr", "cidr('192.168.0.0/24').containsIP(ip('192.168.0.1'))", None, None, True),
    ("cidr", "cidr('192.168.0.0/24').containsIP(ip('192.168.1.1'))", None, None, False),
    ("cidr", "cidr('192.168.0.0/24').containsIP('192.168.0.1')", None, None, True),
    ("cidr", "cidr('192.168.0.0/16').containsCIDR(cidr('192.168.10.0/24'))", None, None, True),
    ("cidr", "cidr('192.168.1.0/24').containsCIDR('192.168.2.0/24')", None, None, False),
    ("cidr", "cidr('192.168.0.0/24').containsCIDR(cidr('192.168.0.1/32'))", None, None, True),
    ("cidr", "cidr('192.168.0.0/24').containsCIDR(cidr('192.168.0.0/23'))", None, None, False),
    ("cidr", "cidr('2001:db8::/32').containsIP('2001:dc8::1')", None, None, False),
    ("cidr", "cidr('192.168.0.1/24').ip() == ip('192.168.0.1')", None, None, True),
    ("cidr", "cidr('::1/128').ip().family()", None, None, 6),
    ("cidr", "cidr('192.168.0.1/24').masked() == cidr('192.168.0.0/24')", None, None, True),
    ("cidr", "cidr('192.168.0.1/24') == cidr('192.168.0.1/24').masked()", None, None, False),
    ("cidr", "cidr('192.168.0.0/16').prefixLength()", None, None, 16),
    ("cidr", "string(cidr('192.168.0.0/24'))", None, None, "192.168.0.0/24"),
    ("cidr", "type(cidr('192.168.0.0/24')) == net.CIDR", None, None, True),
    # format library (format.go, format_test.go)
    ("format", "format.dns1123Label().validate('my-label-name').hasValue()", None, None, False),
    ("format", "format.dns1123Label().validate('MY_LABEL').hasValue()", None, None, True),
    ("format", "format.dns1123Subdomain().validate('apiextensions.k8s.io').hasValue()", None,
     None, False),
    ("format", "format.dns1035Label().validate('1abc').hasValue()", None, None, True),
    ("format", "format.qualifiedName().validate('apiextensions.k8s.io/v1beta1').hasValue()",
     None, None, False),
    ("format", "format.dns1123LabelPrefix().validate('my-label-prefix-').hasValue()", None,
     None, False),
    ("format", "format.labelValue().validate('my_value').hasValue()", None, None, False),
    ("format", "format.uri().validate('http://example.com').hasValue()", None, None, False),
    ("format", "format.uuid().validate('123e4567-e89b-12d3-a456-426614174000').hasValue()",
     None, None, False),
    ("format", "format.byte().validate('aGVsbG8=').hasValue()", None, None, False),
    ("format", "format.date().validate('2021-01-01').hasValue()", None, None, False),
    ("format", "format.datetime().validate('2021-01-01T00:00:00Z').hasValue()", None, None,
     False),
    ("format", "format.named('dns1123Label').hasValue()", None, None, True),
    ("format", "format.named('nope').hasValue()", None, None, False),
    ("format", "format.named('uuid').value().validate('x').hasValue()", None, None, True),
    # semver library (semverlib.go)
    ("semver", "isSemver('1.0.0')", None, None, True),
    ("semver", "isSemver('hello')", None, None, False),
    ("semver", "isSemver('v1.0')", None, None, False),
    ("semver", "semver('1.2.3').major()", None, None, 1),
    ("semver", "semver('1.2.3').compareTo(semver('2.0.0'))", None, None, -1),
    ("semver", "semver('1.2.3').compareTo(semver('0.1.2'))", None, None, 1),
    ("semver", "semver('200K')", None, None, ERROR),
    # optionals and the language options kube sets
    ("optional", "optional.of(1).hasValue()", None, None, True),
    ("optional", "optional.none().orValue(7)", None, None, 7),
    ("optional", "{'a': 1}[?'b'].orValue(5)", None, None, 5),
    ("optional", "self.?health.orValue('none') == 'none'", _HEALTH, {}, True),
    ("language", "1 < 1.5", None, None, True),
    ("language", "[1, 2, 3].exists_one(x, x > 2)", None, None, True),
    ("language", "self.missing > 1", {"type": "object", "properties": {"missing": _INT}}, {},
     ERROR),
    ("language", "1 / 0 == 1", None, None, ERROR),
    ("language", "[1, 'a'].size() == 2", None, None, COMPILE_ERROR),  # homogeneous literals
]


def kext_outcome(expression: str, schema: dict[str, Any] | None, value: Any) -> Any:
    """What kext.cel makes of one example: the value, ERROR or COMPILE_ERROR."""
    from kext import cel

    env = cel.Environment()
    self_type = env.declare(schema) if schema is not None else "dyn"
    env.seal()
    try:
        program = env.compile(expression, self_type, result="dyn")
    except cel.CompileError:
        return COMPILE_ERROR
    convert = cel.converter(schema) if schema is not None else None
    bound = convert(value) if convert is not None else value
    try:
        return program.evaluate(env.activation(bound))
    except cel.EvaluationError:
        return ERROR
