package store

import (
	"context"
	"sync"
	"time"

	"github.com/gatehouse-iot/gatehouse/internal/loop"
)

// SQLite WAL checkpoints run in the background, not in whichever commit
// happens to cross the WAL size threshold.
//
// A checkpoint copies the WAL's pages into the database file and fsyncs both
// files. With SQLite's automatic checkpoints (every 1000 pages) that work ran
// inside every ~60th enrollment's COMMIT, under the write lock, two fsyncs
// included: measured, more than half of the enrollment transaction's wall
// time. Here a goroutine checkpoints shortly after writes, beside the writer,
// and the writer connection checkpoints by itself only as a backstop
// (writerAutoCheckpoint).
//
// Durability is unchanged: a commit is durable once in the WAL, as before
// (synchronous=NORMAL), and a checkpoint still fsyncs the WAL before it
// writes the database file and the database file before the WAL restarts.
const (
	// checkpointDelay lets commits accumulate before a checkpoint: a page
	// written by many commits is copied once, and fsyncs are fewer.
	checkpointDelay = 200 * time.Millisecond
	// walRestartFrames is the WAL length (pages; 64 MiB at 4 KiB) from which
	// a checkpoint finishes under the write lock. A checkpoint that runs
	// beside a busy writer never quite catches up, and SQLite rewinds the
	// WAL to its start only after a checkpoint copied every frame; without
	// this the WAL would grow for as long as writes continue.
	walRestartFrames = 16384
	// walLockedFrames is the most frames a checkpoint leaves for its pass
	// under the write lock, unless checkpointPasses passes beside the writer
	// could not get the remainder that small.
	walLockedFrames  = 512
	checkpointPasses = 8
	// writerAutoCheckpoint is the writer connection's own checkpoint
	// threshold (pages), reached only if the background checkpoints stall.
	writerAutoCheckpoint = 2 * walRestartFrames
)

type checkpointer struct {
	wake     *loop.Waker // a write committed
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func (s *Store) startCheckpointer() {
	s.ckpt = &checkpointer{wake: loop.NewWaker(), stop: make(chan struct{}), done: make(chan struct{})}
	go s.runCheckpointer()
}

// wrote tells the checkpointer that a write transaction committed.
func (s *Store) wrote() {
	if s.ckpt == nil {
		return
	}
	s.ckpt.wake.Wake()
}

func (s *Store) stopCheckpointer() {
	if s.ckpt == nil {
		return
	}
	s.ckpt.stopOnce.Do(func() { close(s.ckpt.stop) })
	<-s.ckpt.done
}

func (s *Store) runCheckpointer() {
	defer close(s.ckpt.done)
	t := time.NewTimer(checkpointDelay)
	t.Stop()
	for {
		select {
		case <-s.ckpt.stop:
			return
		case <-s.ckpt.wake.C():
		}
		t.Reset(checkpointDelay)
		select {
		case <-s.ckpt.stop:
			t.Stop()
			return
		case <-t.C:
		}
		s.checkpoint()
	}
}

// checkpoint copies the WAL into the database beside the writer and, once
// the WAL is long, finishes under the write lock so that it can restart.
// Each pass copies what the writer appended during the one before; the lock
// is taken once that remainder is small, so that the writer waits for a few
// hundred pages rather than thousands. Errors are left to the next round: a
// failed checkpoint loses nothing.
func (s *Store) checkpoint() {
	ctx := context.Background()
	prev := -1
	for pass := 0; ; pass++ {
		var busy, frames, copied int
		if err := s.sql.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err != nil {
			return
		}
		if frames < walRestartFrames {
			return
		}
		if (prev >= 0 && frames-prev <= walLockedFrames) || pass == checkpointPasses {
			break
		}
		prev = frames
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if w, err := s.sqliteWriter(ctx); err == nil {
		_, _ = w.conn.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
	}
}
