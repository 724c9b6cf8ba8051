package authz

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// cacheKey identifies one decision. Topic is a PUBLISH topic or a SUBSCRIBE
// filter; the action keeps the two apart.
type cacheKey struct {
	device string
	action Action
	topic  string
	qos    uint8
	retain bool
}

// cacheEntry is a decision stamped with the generations it was made under.
// It is valid only while the policy generation and the device's generation
// are both unchanged: invalidation is a counter increment, never a scan.
type cacheEntry struct {
	decision  Decision
	policyGen uint64
	deviceGen uint64
}

const cacheShards = 64

// decisionCache is a sharded map with a per-shard size bound. When a shard
// is full it is cleared: crude, but O(1), allocation-light, and a full shard
// only costs the next requests a recomputation (no correctness impact).
type decisionCache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[cacheKey]cacheEntry
	// hits and misses count get's answers, per shard so that counting
	// adds no cache line shared by every decision.
	hits, misses atomic.Uint64
}

func newDecisionCache(size int) *decisionCache {
	c := &decisionCache{seed: maphash.MakeSeed(), perShard: max(size/cacheShards, 16)}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]cacheEntry)
	}
	return c
}

func (c *decisionCache) shard(k *cacheKey) *cacheShard {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(k.device)
	h.WriteString(k.topic)
	return &c.shards[h.Sum64()%cacheShards]
}

func (c *decisionCache) get(k cacheKey, policyGen, deviceGen uint64) (Decision, bool) {
	s := c.shard(&k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if !ok || e.policyGen != policyGen || e.deviceGen != deviceGen {
		s.misses.Add(1)
		return Decision{}, false
	}
	s.hits.Add(1)
	return e.decision, true
}

func (c *decisionCache) put(k cacheKey, e cacheEntry) {
	s := c.shard(&k)
	s.mu.Lock()
	if len(s.m) >= c.perShard {
		clear(s.m)
	}
	s.m[k] = e
	s.mu.Unlock()
}

func (c *decisionCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

func (c *decisionCache) stats() (hits, misses uint64) {
	for i := range c.shards {
		hits += c.shards[i].hits.Load()
		misses += c.shards[i].misses.Load()
	}
	return hits, misses
}
