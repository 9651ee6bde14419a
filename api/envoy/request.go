package envoy

import (
	"fmt"
	"math"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/sluicehq/sluice/api/check"
)

// domainAttr is the attribute that carries the request's domain, so rules
// can tell Envoy deployments (or Envoy from HTTP callers) apart.
const domainAttr = "domain"

// maxDescriptors bounds one request, as /v1/check/batch bounds a batch.
const maxDescriptors = 1000

// clientAddressKey is the entry Envoy's remote_address action fills with
// the client's address. It is a claim about someone else, so it is believed
// only from a trusted proxy; from any other peer the entry becomes that
// peer's own address, exactly as X-Forwarded-For is treated over HTTP.
const clientAddressKey = "remote_address"

// checksOf turns each descriptor into one check: its entries as attributes
// plus the domain, and the hits to add as the cost. A descriptor's own
// hits_addend overrides the request's; 0 (unset) means 1, as in Envoy's
// service. The descriptor's limit override is ignored: Sluice's rules are
// the authority on limits.
// clientAddr resolves a remote_address claim (see clientAddressKey).
func checksOf(req *rlsv3.RateLimitRequest, clientAddr func(claim string) string) ([]check.Request, error) {
	switch n := len(req.GetDescriptors()); {
	case req.GetDomain() == "":
		return nil, fmt.Errorf("domain must not be empty")
	case n == 0:
		return nil, fmt.Errorf("descriptors must not be empty")
	case n > maxDescriptors:
		return nil, fmt.Errorf("at most %d descriptors, got %d", maxDescriptors, n)
	}
	if msg := check.ValueProblem(req.Domain); msg != "" {
		return nil, fmt.Errorf("domain: %s", msg)
	}
	checks := make([]check.Request, len(req.Descriptors))
	for i, desc := range req.Descriptors {
		attrs, err := attributesOf(req.Domain, desc, clientAddr)
		if err != nil {
			return nil, fmt.Errorf("descriptors[%d].%w", i, err)
		}
		if desc.GetIsNegativeHits() {
			return nil, fmt.Errorf("descriptors[%d].is_negative_hits: returning hits is not supported", i)
		}
		checks[i] = check.Request{Attributes: attrs, Cost: hitsOf(req, desc)}
	}
	return checks, nil
}

func attributesOf(domain string, desc *ratelimitv3.RateLimitDescriptor, clientAddr func(string) string) (check.Attrs, error) {
	switch n := len(desc.GetEntries()); {
	case n == 0:
		return nil, fmt.Errorf("entries: must not be empty")
	case n+1 > check.MaxAttributes: // the domain is an attribute too
		return nil, fmt.Errorf("entries: %s with the domain", check.TooManyAttributes)
	}
	attrs := make(check.Attrs, 0, len(desc.Entries)+1)
	attrs = append(attrs, check.Attr{Name: domainAttr, Value: domain})
	for j, e := range desc.Entries {
		key := e.GetKey()
		if key == "" {
			return nil, fmt.Errorf("entries[%d].key: must not be empty", j)
		}
		if msg := check.NameProblem(key); msg != "" {
			return nil, fmt.Errorf("entries[%d].key: %s", j, msg)
		}
		if _, dup := attrs.Get(key); dup {
			if key == domainAttr {
				return nil, fmt.Errorf("entries[%d].key: %q is reserved for the request's domain", j, key)
			}
			return nil, fmt.Errorf("entries[%d].key: %q appears twice", j, key)
		}
		value := e.GetValue()
		if msg := check.ValueProblem(value); msg != "" {
			return nil, fmt.Errorf("entries[%d].value: %s", j, msg)
		}
		if key == clientAddressKey {
			value = clientAddr(value)
		}
		attrs = append(attrs, check.Attr{Name: key, Value: value})
	}
	return attrs, nil
}

func hitsOf(req *rlsv3.RateLimitRequest, desc *ratelimitv3.RateLimitDescriptor) int64 {
	hits := uint64(req.GetHitsAddend())
	if override := desc.GetHitsAddend(); override != nil {
		hits = override.GetValue()
	}
	return int64(min(max(hits, 1), math.MaxInt64))
}
