// Package testrace starts many goroutines at one signal, for tests of
// concurrent requests on one credential or one row.
package testrace

import "sync"

// Run calls fn(i) for i in [0, n) in n goroutines that all wait for one
// start signal, so that the calls overlap as much as the scheduler allows,
// and returns when every call has returned. Whatever a test needs built
// for a call (keys, CSRs, bodies) should be built before Run.
func Run(n int, fn func(i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(i)
		}()
	}
	close(start)
	wg.Wait()
}
