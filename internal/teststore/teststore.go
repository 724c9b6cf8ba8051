// Package teststore wraps the real store for failure tests: every call is
// passed to a real *store.Store (SQLite or PostgreSQL, from testdb), unless
// the test has injected an error for it, in which case the call returns
// that error without touching the database — as if the database refused it.
//
// A double that fakes the store would have to re-implement transactions,
// leases and conditional updates to say anything about how a flow recovers;
// wrapping the real one (SPIRE's fakedatastore is the model) keeps every
// success real and makes only the chosen step fail:
//
//	db := teststore.Open(t, backend)
//	db.FailNth("RevokeBatchChunk", 2, errDown) // the second step fails, once
//	db.FailOn("FinishKick", errDown)           // every call fails until Reset
//	db.SetNextError(errDown)                   // the next call of any method fails
//
// Methods are named as strings, as in the consumer interfaces; a name the
// wrapper does not have panics at once, so a typo cannot make an injection
// silently never fire.
package teststore

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/gatehouse-iot/gatehouse/internal/testdb"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Store delegates to a real store and fails the calls a test chose. It is
// safe for concurrent use (the kick worker delivers in parallel).
//
// It implements the consumer interfaces of revoke, kick and enroll (and
// audit.Sink, for enroll's Recorder; authzsync.Source and policy.Versions,
// for the replica-outage tests) explicitly, method by method, rather
// than by embedding *store.Store: an embedded method would pass through
// without the injection check, and a test failing it would pass for the
// wrong reason. Setting up data and asserting on it goes through Real.
type Store struct {
	real *store.Store

	mu    sync.Mutex
	next  []error          // SetNextError, AppendNextError: the next calls of any method, in order
	on    map[string]error // FailOn: every call of the method
	nth   map[string]map[int]error
	calls map[string]int
}

// New wraps st.
func New(st *store.Store) *Store {
	return &Store{real: st, on: map[string]error{}, nth: map[string]map[int]error{}, calls: map[string]int{}}
}

// Open opens a real store on a fresh database of backend ("sqlite" or
// "postgres", see testdb.All; postgres skips unless configured), closed when
// the test ends, and wraps it.
func Open(t testing.TB, backend string) *Store {
	t.Helper()
	st, err := store.New(context.Background(), store.Config{DSN: testdb.DSN(t, backend)})
	if err != nil {
		t.Fatalf("teststore: open %s: %v", backend, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return New(st)
}

// Real is the wrapped store, for setting up data and checking outcomes
// without going through (or consuming) injections.
func (s *Store) Real() *store.Store { return s.real }

// SetNextError makes the next call of any wrapped method return err, once,
// replacing what SetNextError and AppendNextError queued before.
func (s *Store) SetNextError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next = []error{err}
}

// AppendNextError queues err for the call after those already queued, so a
// test can script a run of calls; a nil lets its call through.
func (s *Store) AppendNextError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next = append(s.next, err)
}

// FailOn makes every call of method return err until Reset (or FailOn with
// a nil err): the database is down for that statement.
func (s *Store) FailOn(method string, err error) {
	mustHave(method)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.on, method)
		return
	}
	s.on[method] = err
}

// FailNth makes the n-th call of method from now on (1: the next one)
// return err, once; the calls before and after it reach the store. It is
// how a test fails exactly one step in the middle of a flow.
func (s *Store) FailNth(method string, n int, err error) {
	mustHave(method)
	if n < 1 {
		panic(fmt.Sprintf("teststore: FailNth(%q, %d): n counts from 1", method, n))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nth[method] == nil {
		s.nth[method] = map[int]error{}
	}
	s.nth[method][s.calls[method]+n] = err
}

// Reset drops every injection not yet fired; the call counts stay.
func (s *Store) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next, s.on, s.nth = nil, map[string]error{}, map[string]map[int]error{}
}

// Calls reports how many calls of method were made, failed ones included.
func (s *Store) Calls(method string) int {
	mustHave(method)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// check counts a call of method and returns the error injected for it, if
// any. SetNextError comes first: it was meant for whichever call is next.
func (s *Store) check(method string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[method]++
	if len(s.next) > 0 {
		err := s.next[0]
		s.next = s.next[1:]
		if err != nil {
			return err
		}
	}
	if err, ok := s.nth[method][s.calls[method]]; ok {
		delete(s.nth[method], s.calls[method])
		return err
	}
	return s.on[method]
}

// control are the methods that steer the wrapper rather than wrap the store.
var control = map[string]bool{"Real": true, "SetNextError": true, "AppendNextError": true, "FailOn": true, "FailNth": true, "Reset": true, "Calls": true}

// Methods names every wrapped store method, the names FailOn, FailNth and
// Calls accept.
func Methods() []string {
	t := reflect.TypeFor[*Store]()
	var out []string
	for i := range t.NumMethod() {
		if name := t.Method(i).Name; !control[name] {
			out = append(out, name)
		}
	}
	return out
}

func mustHave(method string) {
	if control[method] {
		panic(fmt.Sprintf("teststore: %s steers the wrapper; it is not a store method", method))
	}
	if _, ok := reflect.TypeFor[*Store]().MethodByName(method); !ok {
		panic(fmt.Sprintf("teststore: no wrapped store method %q (have %v)", method, Methods()))
	}
}
