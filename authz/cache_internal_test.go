package authz

import "testing"

// TestCacheHitNeedsTheWholeKey: the cache is keyed by a hash, so an entry
// found under a request's hash is a hit only when its key is the
// request's, every field of it, and both generations match.
func TestCacheHitNeedsTheWholeKey(t *testing.T) {
	c := newDecisionCache(1024)
	k := cacheKey{device: "dev-1", action: Publish, topic: "a/b", qos: 1, retain: true}
	h := c.hash(&k)
	c.put(h, cacheEntry{key: k, decision: Decision{Allow: true, Device: "dev-1"}, policyGen: 3, deviceGen: 7})
	for _, tc := range []struct {
		name     string
		key      cacheKey
		pol, dev uint64
		hit      bool
	}{
		{"same key", k, 3, 7, true},
		{"other device", cacheKey{device: "dev-2", action: Publish, topic: "a/b", qos: 1, retain: true}, 3, 7, false},
		{"other action", cacheKey{device: "dev-1", action: Subscribe, topic: "a/b", qos: 1, retain: true}, 3, 7, false},
		{"other topic", cacheKey{device: "dev-1", action: Publish, topic: "a/c", qos: 1, retain: true}, 3, 7, false},
		{"other qos", cacheKey{device: "dev-1", action: Publish, topic: "a/b", qos: 0, retain: true}, 3, 7, false},
		{"other retain", cacheKey{device: "dev-1", action: Publish, topic: "a/b", qos: 1}, 3, 7, false},
		{"new policy", k, 4, 7, false},
		{"device changed", k, 3, 8, false},
	} {
		// Asked under the stored entry's hash, as a 64-bit collision would.
		if _, hit := c.get(h, &tc.key, tc.pol, tc.dev); hit != tc.hit {
			t.Errorf("%s: hit = %v, want %v", tc.name, hit, tc.hit)
		}
	}
}

// TestCacheHashDelimitsParts: moving bytes between the device and the
// topic, or changing any other field, changes the hash, so no device can
// name a topic that lands on another device's entry.
func TestCacheHashDelimitsParts(t *testing.T) {
	c := newDecisionCache(1024)
	keys := []cacheKey{
		{device: "ab", action: Publish, topic: "c"},
		{device: "a", action: Publish, topic: "bc"},
		{device: "abc", action: Publish, topic: ""},
		{device: "ab", action: Subscribe, topic: "c"},
		{device: "ab", action: Read, topic: "c"},
		{device: "ab", action: Publish, topic: "c", qos: 1},
		{device: "ab", action: Publish, topic: "c", retain: true},
		{device: "ab", action: "publis", topic: "hc"},
	}
	seen := map[uint64]cacheKey{}
	for _, k := range keys {
		h := c.hash(&k)
		if other, dup := seen[h]; dup {
			t.Errorf("%+v and %+v share hash %x", k, other, h)
		}
		seen[h] = k
	}
}
