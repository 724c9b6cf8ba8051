// Package audit records who changed what. Every domain service writes its
// changes through a Recorder, so the audit trail has one shape.
package audit

import (
	"context"
	"log/slog"

	"github.com/gatehouse-iot/gatehouse/store"
)

// Sink stores audit events.
type Sink interface {
	AppendAudit(ctx context.Context, e store.AuditEvent) error
}

// Recorder writes audit events to a Sink.
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

// Record writes one event. The change it describes has already committed, so
// a failed write is not the caller's failure: it is logged at error level,
// never silently dropped.
func (r *Recorder) Record(ctx context.Context, actor, action, objType, objID, detail string) {
	err := r.sink.AppendAudit(ctx, store.AuditEvent{Actor: actor, Action: action, ObjectType: objType,
		ObjectID: objID, Detail: detail})
	if err != nil {
		r.log.Error("audit event lost", "actor", actor, "action", action, "object", objType+"/"+objID, "err", err)
	}
}
