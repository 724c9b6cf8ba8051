// Package audit records who changed what.
//
// The one rule: every state change writes its audit event in the same
// database transaction as the change. A domain service builds the event with
// Event and hands it to the store call that makes the change; the store
// inserts it inside that call's transaction (store.appendAuditTx), so a
// change without its event never commits, and a failed audit insert fails
// and rolls back the change.
//
// Recorder is kept only for events that accompany no state change, so have
// no transaction to join: today a repeated enrollment answered from what is
// stored (device.enroll_repeat). Failed logins are not audit events; they
// are throttled in memory (package auth).
package audit

import (
	"context"
	"log/slog"

	"github.com/gatehouse-iot/gatehouse/store"
)

// Event returns the audit event of one change, to pass to the store call
// that makes it.
func Event(actor, action, objType, objID, detail string) *store.AuditEvent {
	return &store.AuditEvent{Actor: actor, Action: action, ObjectType: objType, ObjectID: objID, Detail: detail}
}

// Sink stores audit events.
type Sink interface {
	AppendAudit(ctx context.Context, e store.AuditEvent) error
}

// Recorder writes audit events that accompany no state change to a Sink.
type Recorder struct {
	sink Sink
	log  *slog.Logger
}

// New returns a Recorder; a nil logger discards write failures' reports.
func New(sink Sink, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{sink: sink, log: log}
}

// Record writes one event that accompanies no state change. Nothing is left
// to undo when it fails, so the failure is not the caller's: it is logged at
// error level, never silently dropped.
func (r *Recorder) Record(ctx context.Context, actor, action, objType, objID, detail string) {
	err := r.sink.AppendAudit(ctx, *Event(actor, action, objType, objID, detail))
	if err != nil {
		r.log.Error("audit event lost", "actor", actor, "action", action, "object", objType+"/"+objID, "err", err)
	}
}
