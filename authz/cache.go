package authz

import (
	"encoding/binary"
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
	// key is the whole key, kept to confirm a hit: the map is keyed by the
	// key's hash alone, and two keys of one hash only evict each other.
	key       cacheKey
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
	// m is keyed by decisionCache.hash: the shard's hash is computed
	// anyway, and a uint64 key spares the map a second hash of three
	// strings and a struct comparison per lookup.
	m map[uint64]cacheEntry
	// hits and misses count get's answers, per shard so that counting
	// adds no cache line shared by every decision.
	hits, misses atomic.Uint64
}

func newDecisionCache(size int) *decisionCache {
	c := &decisionCache{seed: maphash.MakeSeed(), perShard: max(size/cacheShards, 16)}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]cacheEntry)
	}
	return c
}

// hash is k's hash under the cache's seed. The parts are length-delimited,
// so two distinct keys never hash the same bytes: a device cannot name a
// topic that lands on another device's entry, short of a 64-bit collision
// under a seed it does not know (and even then get's key check only makes
// it a miss).
func (c *decisionCache) hash(k *cacheKey) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(k.device)
	h.WriteString(k.topic)
	h.WriteString(string(k.action))
	var tail [10]byte
	binary.LittleEndian.PutUint32(tail[0:], uint32(len(k.device)))
	binary.LittleEndian.PutUint32(tail[4:], uint32(len(k.topic)))
	tail[8] = k.qos
	if k.retain {
		tail[9] = 1
	}
	_, _ = h.Write(tail[:])
	return h.Sum64()
}

// get returns the decision held for k, whose hash is h, when it was made
// under both generations.
func (c *decisionCache) get(h uint64, k *cacheKey, policyGen, deviceGen uint64) (Decision, bool) {
	s := &c.shards[h%cacheShards]
	s.mu.RLock()
	e, ok := s.m[h]
	s.mu.RUnlock()
	if !ok || e.key != *k || e.policyGen != policyGen || e.deviceGen != deviceGen {
		s.misses.Add(1)
		return Decision{}, false
	}
	s.hits.Add(1)
	return e.decision, true
}

// put holds e under h, the hash of e.key.
func (c *decisionCache) put(h uint64, e cacheEntry) {
	s := &c.shards[h%cacheShards]
	s.mu.Lock()
	if len(s.m) >= c.perShard {
		clear(s.m)
	}
	s.m[h] = e
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
