package policy

import (
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The policy sandbox: the built-in functions a Gatehouse policy may call.
//
// A policy is operator input that runs inside the control plane, and its
// result is cached per device until the device or the policy changes. So a
// built-in is allowed only if its result depends on its arguments alone
// (no network, no environment, no clock, no randomness: a grant computed
// now must be the grant computed a minute later, on any replica) and its
// cost is linear in its input or interruptible by the evaluation's
// deadline.
//
// This is an allow-list, not a deny-list over OPA's built-ins: a built-in
// that a future OPA release adds is refused until someone reads it and
// lists it here (TestSandboxClassifiesEveryBuiltin fails on the upgrade and
// says which). A deny-list would let the next http.send in silently.
var allowedBuiltins = setOf(
	// Operators and the language's own helpers (membership, print, test
	// case injection by the test runner, template strings).
	"assign", "eq", "equal", "neq", "lt", "lte", "gt", "gte", "plus", "minus", "mul", "div", "rem", "and", "or",
	"internal.member_2", "internal.member_3", "internal.print", "internal.template_string", "internal.test_case",
	"print", "trace",
	// Numbers and aggregates. numbers.range checks the deadline while it
	// generates (see README: evaluation is bounded by time, not memory).
	"abs", "ceil", "floor", "round", "format_int", "to_number", "numbers.range", "numbers.range_step",
	"bits.and", "bits.negate", "bits.or", "bits.rsh", "bits.xor",
	"count", "sum", "product", "max", "min", "sort",
	// Arrays, sets, objects.
	"array.concat", "array.flatten", "array.reverse", "array.slice", "intersection", "union",
	"object.filter", "object.get", "object.keys", "object.remove", "object.subset", "object.union", "object.union_n",
	"json.filter", "json.remove", "json.patch", "walk", "graph.reachable",
	// Strings, regular expressions (RE2: linear time), globs.
	"concat", "contains", "endswith", "startswith", "indexof", "indexof_n", "lower", "upper", "replace", "split",
	"sprintf", "substring", "trim", "trim_left", "trim_prefix", "trim_right", "trim_space", "trim_suffix",
	"strings.any_prefix_match", "strings.any_suffix_match", "strings.count", "strings.replace_n", "strings.reverse",
	"strings.split_n",
	"regex.find_all_string_submatch_n", "regex.find_n", "regex.is_valid", "regex.match", "regex.replace",
	"regex.split", "regex.template_match", "glob.match", "glob.quote_meta",
	// Types.
	"is_array", "is_boolean", "is_null", "is_number", "is_object", "is_set", "is_string", "type_name",
	// Encodings and parsers of small values.
	"base64.decode", "base64.encode", "base64.is_valid", "base64url.decode", "base64url.encode",
	"base64url.encode_no_pad", "hex.decode", "hex.encode", "json.is_valid", "json.marshal",
	"json.marshal_with_options", "json.unmarshal", "yaml.is_valid", "yaml.marshal", "yaml.unmarshal",
	"urlquery.decode", "urlquery.decode_object", "urlquery.encode", "urlquery.encode_object", "uri.is_valid",
	"uri.parse", "units.parse", "units.parse_bytes", "semver.compare", "semver.is_valid", "uuid.parse",
	// Address arithmetic only; net.lookup_ip_addr is refused.
	"net.cidr_contains", "net.cidr_contains_matches", "net.cidr_expand", "net.cidr_intersects",
	"net.cidr_is_valid", "net.cidr_merge",
	// Time arithmetic on given timestamps; time.now_ns is refused.
	"time.add_date", "time.clock", "time.date", "time.diff", "time.format", "time.parse_duration_ns",
	"time.parse_ns", "time.parse_rfc3339_ns", "time.weekday",
	// Hashes, MACs, parsing and signature checks with keys given as arguments.
	"crypto.hmac.equal", "crypto.hmac.md5", "crypto.hmac.sha1", "crypto.hmac.sha256", "crypto.hmac.sha512",
	"crypto.md5", "crypto.sha1", "crypto.sha256", "crypto.parse_private_keys", "crypto.x509.parse_certificates",
	"crypto.x509.parse_certificate_request", "crypto.x509.parse_keypair", "crypto.x509.parse_rsa_private_key",
	"io.jwt.decode", "io.jwt.verify_eddsa", "io.jwt.verify_es256", "io.jwt.verify_es384", "io.jwt.verify_es512",
	"io.jwt.verify_hs256", "io.jwt.verify_hs384", "io.jwt.verify_hs512", "io.jwt.verify_ps256",
	"io.jwt.verify_ps384", "io.jwt.verify_ps512", "io.jwt.verify_rs256", "io.jwt.verify_rs384",
	"io.jwt.verify_rs512",
	"rego.metadata.chain", "rego.metadata.rule",
)

// Why each of this OPA version's other built-ins is refused; the reason is
// part of the problem shown to the policy author.
const (
	whyNetwork      = "it reaches the network"
	whyEnvironment  = "it reads the server's environment"
	whyClock        = "its result depends on the clock, but grants are cached per device"
	whyRandom       = "its result is random, but grants are cached per device"
	whyUnbounded    = "its cost in one call is unbounded and cannot be interrupted"
	whyNotForPolicy = "a topic ACL has no use for it, and it parses large inputs in one uninterruptible call"
	whyDeprecated   = "it is deprecated and not part of Rego v1"
)

var refusedBuiltins = map[string]string{
	"http.send":          whyNetwork,
	"net.lookup_ip_addr": whyNetwork,
	// $ref in a schema fetches remote documents.
	"json.match_schema":  whyNetwork,
	"json.verify_schema": whyNetwork,
	"opa.runtime":        whyEnvironment,
	// Signs with the clock's time and cloud credentials.
	"providers.aws.sign_req": whyEnvironment,
	"time.now_ns":            whyClock,
	// Checks exp/nbf against the clock unless told a time.
	"io.jwt.decode_verify": whyClock,
	// Verify certificate validity against the clock by default.
	"crypto.x509.parse_and_verify_certificates":              whyClock,
	"crypto.x509.parse_and_verify_certificates_with_options": whyClock,
	"rand.intn":              whyRandom,
	"uuid.rfc4122":           whyRandom,
	"io.jwt.encode_sign":     whyRandom,
	"io.jwt.encode_sign_raw": whyRandom,
	// Recursive templates run exponentially long inside one call.
	"strings.render_template": whyUnbounded,
	// Enumerates every path of a graph: exponential in one call.
	"graph.reachable_paths": whyUnbounded,
	// bits.lsh(1, n) allocates n bits in one call: a tiny input is a fatal
	// out-of-memory (not a panic) of the whole server.
	"bits.lsh": whyUnbounded,
	// Intersects glob automata: superlinear in one call.
	"regex.globs_match":        whyUnbounded,
	"rego.parse_module":        whyNotForPolicy,
	"graphql.is_valid":         whyNotForPolicy,
	"graphql.parse":            whyNotForPolicy,
	"graphql.parse_and_verify": whyNotForPolicy,
	"graphql.parse_query":      whyNotForPolicy,
	"graphql.parse_schema":     whyNotForPolicy,
	"graphql.schema_is_valid":  whyNotForPolicy,
	"all":                      whyDeprecated,
	"any":                      whyDeprecated,
	"cast_array":               whyDeprecated,
	"cast_boolean":             whyDeprecated,
	"cast_null":                whyDeprecated,
	"cast_object":              whyDeprecated,
	"cast_set":                 whyDeprecated,
	"cast_string":              whyDeprecated,
	"net.cidr_overlap":         whyDeprecated,
	"re_match":                 whyDeprecated,
	"set_diff":                 whyDeprecated,
}

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// sandbox returns the capabilities every policy is compiled and evaluated
// with: this OPA's built-ins cut down to the allow-list, and no host for
// the features that fetch (allow_net: nil would mean any host). A fresh
// value per compiler (microseconds, at compile time only): the compiler
// keeps a pointer, and nothing is shared between concurrent compilations.
func sandbox() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion(ast.CapabilitiesRegoVersion(ast.RegoV1))
	kept := make([]*ast.Builtin, 0, len(allowedBuiltins))
	for _, b := range c.Builtins {
		if allowedBuiltins[b.Name] {
			kept = append(kept, b)
		}
	}
	c.Builtins = kept
	c.AllowNet = []string{}
	return c
}

// newCompiler returns a compiler confined to the sandbox.
func newCompiler() *ast.Compiler {
	return ast.NewCompiler().WithCapabilities(sandbox())
}

// AllowedBuiltins lists the built-ins a policy may call, sorted (for the
// README and the UI).
func AllowedBuiltins() []string {
	out := make([]string, 0, len(allowedBuiltins))
	for _, b := range sandbox().Builtins {
		out = append(out, b.Name)
	}
	sort.Strings(out)
	return out
}

// explainRefused rewrites the compiler's "undefined function X" for a
// built-in the sandbox leaves out, so the author learns it exists but is
// not allowed, and why.
func explainRefused(msg string) string {
	const prefix = "undefined function "
	name, ok := strings.CutPrefix(msg, prefix)
	if !ok {
		return msg
	}
	if _, known := ast.BuiltinMap[name]; !known {
		return msg
	}
	why := refusedBuiltins[name]
	if why == "" {
		why = "it is not on Gatehouse's allow-list of built-ins"
	}
	return "built-in " + name + " is not allowed in a Gatehouse policy: " + why
}
