package store

import (
	"context"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
)

// TestCheckpointBesideWriter: a checkpoint of a long WAL that runs while a
// writer keeps committing completes (its last pass takes the write lock the
// writer holds between commits), and the WAL then starts over instead of
// growing. Whether the passes beside the writer would have caught up on their
// own is a matter of timing; under sustained load they did not.
func TestCheckpointBesideWriter(t *testing.T) {
	ctx := context.Background()
	s, err := New(ctx, Config{DSN: filepath.Join(t.TempDir(), "gatehouse.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.stopCheckpointer() // this test runs the checkpoint itself

	write := func(q string) error {
		return s.writeSQL(ctx, func(ex execer) error { _, err := ex.ExecContext(ctx, q); return err })
	}
	// More than walRestartFrames pages, through the writer, whose own
	// automatic checkpoint does not fire below writerAutoCheckpoint.
	if err := write("CREATE TABLE filler (b BLOB)"); err != nil {
		t.Fatal(err)
	}
	for range walRestartFrames*4096/(1<<20) + 4 {
		if err := write("INSERT INTO filler VALUES (zeroblob(1048576))"); err != nil {
			t.Fatal(err)
		}
	}

	// A writer keeps appending while the checkpoint runs, as under load.
	var writes atomic.Int64
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := write("INSERT INTO filler VALUES (zeroblob(8192))"); err != nil {
				t.Error(err)
				return
			}
			writes.Add(1)
		}
	}()
	for writes.Load() < 10 {
		runtime.Gosched()
	}
	s.checkpoint()
	for n := writes.Load(); writes.Load() < n+10; {
		runtime.Gosched()
	}
	close(stop)
	<-stopped

	var busy, frames, copied int
	if err := s.sql.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err != nil {
		t.Fatal(err)
	}
	if frames >= walRestartFrames {
		t.Errorf("WAL holds %d frames after a checkpoint and further writes, want it started over", frames)
	}
}
